/* Participation maps (vendored Leaflet, no other library):
   - data-mode="point": click to place the corrected-location pin (fills #p-lon, #p-lat);
   - data-mode="area": click two opposite corners to mark a rectangle (fills #p-area with a
     GeoJSON Polygon);
   - data-mode="show": draw a dataset's reports layer (data-layer, GeoJSON).
   The map fits data-feature (a feature's GeoJSON), else data-extent (a collection's or the
   catalogue's extents). */
(function () {
  "use strict";
  var L = window.L;
  var el = document.getElementById("pick-map") || document.getElementById("reports-map");
  if (!el || !L) return;
  var mode = el.dataset.mode;
  var map = L.map(el, { scrollWheelZoom: false, doubleClickZoom: mode !== "area" });
  window.Shahr.basemap(map);
  map.setView([35.7, 51.4], 11);
  var COLOR = "#b54708";

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    });
  }

  function fitBbox(b) {
    if (b && b.length >= 4) map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { padding: [10, 10] });
  }

  function fitExtent() {
    if (!el.dataset.extent) return Promise.resolve();
    return getJSON(el.dataset.extent).then(function (doc) {
      if (doc.extent && doc.extent.spatial) { fitBbox(doc.extent.spatial.bbox[0]); return; }
      var boxes = (doc.datasets || []).map(function (d) { return d.extent && d.extent.bbox; })
        .filter(Boolean);
      if (!boxes.length) return;
      fitBbox([Math.min.apply(null, boxes.map(function (b) { return b[0]; })),
               Math.min.apply(null, boxes.map(function (b) { return b[1]; })),
               Math.max.apply(null, boxes.map(function (b) { return b[2]; })),
               Math.max.apply(null, boxes.map(function (b) { return b[3]; }))]);
    }).catch(function () { /* the map stays on its default view */ });
  }

  function done() { el.dataset.drawn = "1"; }

  if (mode === "show") {
    getJSON(el.dataset.layer).then(function (fc) {
      var layer = L.geoJSON(fc, {
        pointToLayer: function (f, latlng) {
          return L.circleMarker(latlng, { radius: 7, color: COLOR, weight: 2, fillOpacity: 0.6 });
        },
        onEachFeature: function (f, l) {
          var a = document.createElement("a");
          a.href = el.dataset.reportBase + encodeURIComponent(f.id);
          a.textContent = "#" + window.Shahr.digits(f.id);
          l.bindPopup(a);
        }
      }).addTo(map);
      var b = layer.getBounds();
      if (b.isValid()) map.fitBounds(b, { padding: [20, 20], maxZoom: 16 });
      el.dataset.count = String(fc.features.length);
      done();
    }).catch(done);
    return;
  }

  var clear = document.getElementById("pick-clear");
  if (mode === "point") {
    var lon = document.getElementById("p-lon");
    var lat = document.getElementById("p-lat");
    var pin = null;
    var place = function (latlng) {
      if (pin) pin.setLatLng(latlng);
      else pin = L.circleMarker(latlng, { radius: 8, color: COLOR, weight: 3, fillOpacity: 0.7 })
        .addTo(map);
      lon.value = latlng.lng.toFixed(7);
      lat.value = latlng.lat.toFixed(7);
    };
    map.on("click", function (e) { place(e.latlng); });
    if (clear) clear.addEventListener("click", function () {
      if (pin) { map.removeLayer(pin); pin = null; }
      lon.value = ""; lat.value = "";
    });
    var start = el.dataset.feature
      ? getJSON(el.dataset.feature).then(function (f) {
          var shown = L.geoJSON(f, { style: { color: "#1849a9", weight: 3, fillOpacity: 0.15 },
            pointToLayer: function (g, ll) {
              return L.circleMarker(ll, { radius: 6, color: "#1849a9", weight: 2 });
            } }).addTo(map);
          var b = shown.getBounds();
          if (b.isValid() && !b.getNorthEast().equals(b.getSouthWest())) map.fitBounds(b, { maxZoom: 18 });
          else if (b.isValid()) map.setView(b.getCenter(), 16);
        }).catch(fitExtent)
      : fitExtent();
    start.then(function () {
      if (lon.value && lat.value) place(L.latLng(+lat.value, +lon.value));
      done();
    });
    return;
  }

  if (mode === "area") {
    var input = document.getElementById("p-area");
    var corner = null;
    var rect = null;
    var show = function (geom) {
      if (rect) map.removeLayer(rect);
      rect = L.geoJSON(geom, { style: { color: COLOR, weight: 2, fillOpacity: 0.15 } }).addTo(map);
    };
    map.on("click", function (e) {
      if (!corner) { corner = e.latlng; return; }
      var w = Math.min(corner.lng, e.latlng.lng), s = Math.min(corner.lat, e.latlng.lat);
      var east = Math.max(corner.lng, e.latlng.lng), n = Math.max(corner.lat, e.latlng.lat);
      corner = null;
      if (w === east || s === n) return;
      var r = function (v) { return +v.toFixed(6); };
      var geom = { type: "Polygon", coordinates: [[[r(w), r(s)], [r(east), r(s)], [r(east), r(n)],
                                                    [r(w), r(n)], [r(w), r(s)]]] };
      input.value = JSON.stringify(geom);
      show(geom);
    });
    if (clear) clear.addEventListener("click", function () {
      if (rect) { map.removeLayer(rect); rect = null; }
      corner = null; input.value = "";
    });
    fitExtent().then(function () {
      if (input.value) { try { show(JSON.parse(input.value)); } catch (e) { input.value = ""; } }
      done();
    });
  }
})();
