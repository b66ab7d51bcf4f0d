/* The search page's map: each dataset on the page drawn as its extent (a rectangle), linked
   to its page. Leaflet is served by Shahr (/static/vendor/leaflet). */
(function () {
  "use strict";
  var el = document.getElementById("extents-map");
  var data = document.getElementById("extents-data");
  if (!el || !data || !window.L) return;
  var items = JSON.parse(data.textContent);
  var map = window.L.map(el, { scrollWheelZoom: false, attributionControl: true });
  window.Shahr.basemap(map);
  var colours = ["#0b4a57", "#b54708", "#6d28d9", "#0d6e61", "#a4161a", "#1d4ed8"];
  var bounds = window.L.latLngBounds([]);
  var rects = {};
  items.forEach(function (d, i) {
    var b = d.bbox;
    var rect = window.L.rectangle([[b[1], b[0]], [b[3], b[2]]], {
      color: colours[i % colours.length], weight: 2, fillOpacity: 0.05
    }).addTo(map);
    rect.bindTooltip(d.title, { sticky: true });
    rects[d.slug] = rect;
    rect.on("click", function () { window.location.href = d.href; });
    bounds.extend(rect.getBounds());
  });
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [10, 10] });
  else map.setView([0, 0], 1);
  el.dataset.drawn = String(items.length);

  /* Pointing at (or tabbing into) a result shows which rectangle is its. */
  function highlight(slug, on) {
    var rect = rects[slug];
    if (!rect) return;
    rect.setStyle({ weight: on ? 4 : 2, fillOpacity: on ? 0.3 : 0.05 });
    if (on) rect.bringToFront();
  }
  document.querySelectorAll(".results li[data-slug]").forEach(function (li) {
    var slug = li.dataset.slug;
    ["mouseenter", "focusin"].forEach(function (e) {
      li.addEventListener(e, function () { highlight(slug, true); });
    });
    ["mouseleave", "focusout"].forEach(function (e) {
      li.addEventListener(e, function () { highlight(slug, false); });
    });
  });
})();
