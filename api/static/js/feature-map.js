/* The feature page's small map: the feature's own GeoJSON, fitted to it. */
(function () {
  "use strict";
  var el = document.getElementById("feature-map");
  var data = document.getElementById("feature-data");
  if (!el || !data || !window.L) return;
  var feature = JSON.parse(data.textContent);
  var map = window.L.map(el, { scrollWheelZoom: false });
  window.Shahr.basemap(map);
  var layer = window.L.geoJSON(feature, {
    style: { color: "#b54708", weight: 3, fillOpacity: 0.2 },
    pointToLayer: function (f, latlng) {
      return window.L.circleMarker(latlng, { radius: 8, color: "#b54708", weight: 3,
                                             fillOpacity: 0.6 });
    }
  }).addTo(map);
  var bounds = layer.getBounds();
  if (bounds.isValid() && !bounds.getNorthEast().equals(bounds.getSouthWest())) {
    map.fitBounds(bounds, { padding: [20, 20], maxZoom: 18 });
  } else if (bounds.isValid()) {
    map.setView(bounds.getCenter(), 16);
  }
  el.dataset.drawn = "1";
})();
