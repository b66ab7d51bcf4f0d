/* Shahr's pages: small helpers shared by the page scripts (no build step, no framework).
   Copy buttons for the code snippets; number formatting in the page's language; the
   basemap the server is configured with (none when offline). */
(function () {
  "use strict";
  var PERSIAN = "۰۱۲۳۴۵۶۷۸۹";
  var lang = document.documentElement.lang || "en";

  function digits(text) {
    text = String(text);
    if (lang !== "fa") return text;
    return text.replace(/[0-9]/g, function (d) { return PERSIAN[+d]; });
  }

  function number(n) {
    if (typeof n !== "number") return digits(n);
    var text = n.toLocaleString("en-US", { maximumFractionDigits: 6 });
    if (lang !== "fa") return text;
    return digits(text.replace(/,/g, "\u066C").replace(/\./g, "\u066B"));
  }

  function date(iso) {
    if (lang !== "fa" || !/^\d{4}-\d{2}-\d{2}/.test(iso)) return iso;
    var d = new Date(iso.length === 10 ? iso + "T12:00:00Z" : iso);
    if (isNaN(d)) return iso;
    try {
      var opts = { year: "numeric", month: "2-digit", day: "2-digit", timeZone: "UTC" };
      return digits(new Intl.DateTimeFormat("fa-IR-u-ca-persian-nu-latn", opts).format(d));
    } catch (e) {
      return digits(iso);
    }
  }

  /* The server's basemap on a Leaflet map: an XYZ template, or nothing (offline). */
  function basemap(map) {
    var meta = document.querySelector('meta[name="shahr-basemap"]');
    var url = meta ? meta.content : "";
    if (!url) return;
    var attribution = url.indexOf("openstreetmap.org") >= 0
      ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>' : "";
    window.L.tileLayer(url, { maxZoom: 19, attribution: attribution }).addTo(map);
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(function () { return true; },
        function () { return fallbackCopy(text); });
    }
    return Promise.resolve(fallbackCopy(text));
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.insetInlineStart = "-9999px";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function setUpCopyButtons() {
    var status = document.querySelector(".copy-status");
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      var label = button.textContent;
      button.addEventListener("click", function () {
        var code = document.getElementById(button.dataset.copy);
        if (!code) return;
        copyText(code.textContent).then(function (ok) {
          if (!ok) return;
          button.textContent = button.dataset.copied;
          button.dataset.state = "copied";
          if (status) status.textContent = button.dataset.copied;
          setTimeout(function () {
            button.textContent = label;
            delete button.dataset.state;
          }, 2500);
        });
      });
    });
  }

  /* Panels open by default (no script: all shown) but folded on a phone, where they would
     push the results far down. */
  function foldOnNarrowScreens() {
    if (!window.matchMedia("(max-width: 52rem)").matches) return;
    document.querySelectorAll("details[data-close-narrow]").forEach(function (d) {
      d.open = false;
    });
  }

  window.Shahr = { lang: lang, digits: digits, number: number, date: date, basemap: basemap,
                   copyText: copyText };
  function start() {
    setUpCopyButtons();
    foldOnNarrowScreens();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
