/* The dataset page's table of the first rows, paged through the items endpoint (OGC API
   Features): it follows the response's next/prev links, so paging is by feature id. */
(function () {
  "use strict";
  var section = document.getElementById("preview");
  if (!section || !window.fetch) return;
  var S = window.Shahr;
  var table = section.querySelector("table");
  var body = table.querySelector("tbody");
  var fields = Array.prototype.map.call(table.querySelectorAll("th[data-field]"), function (th) {
    return { name: th.dataset.field, type: th.dataset.type };
  });
  var status = section.querySelector(".preview-status");
  var prev = section.querySelector('[data-page="prev"]');
  var next = section.querySelector('[data-page="next"]');
  var limit = +section.dataset.limit || 10;
  var start = 0;
  var links = {};
  var returned = 0;

  function cell(value, type) {
    var td = document.createElement("td");
    if (value === null || value === undefined) {
      td.textContent = "—";
      td.className = "none";
    } else if (typeof value === "number") {
      td.textContent = S.number(value);
    } else if (typeof value === "boolean") {
      td.textContent = value ? "✓" : "✗";
    } else if (type === "date" || type === "datetime") {
      td.textContent = S.date(String(value));
    } else {
      td.textContent = String(value);
    }
    return td;
  }

  function show(page) {
    body.textContent = "";
    page.features.forEach(function (f) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      var a = document.createElement("a");
      a.href = section.dataset.featureBase + encodeURIComponent(f.id);
      a.textContent = S.digits(f.id);
      th.appendChild(a);
      tr.appendChild(th);
      fields.forEach(function (field) {
        tr.appendChild(cell((f.properties || {})[field.name], field.type));
      });
      body.appendChild(tr);
    });
    links = {};
    (page.links || []).forEach(function (l) { links[l.rel] = l.href; });
    returned = page.features.length;
    var total = page.numberMatched !== undefined ? page.numberMatched : +section.dataset.total;
    status.textContent = section.dataset.textRows
      .replace("{first}", S.number(returned ? start + 1 : 0))
      .replace("{last}", S.number(start + returned))
      .replace("{total}", S.number(total));
    prev.disabled = !links.prev;
    next.disabled = !links.next;
  }

  function load(url) {
    status.textContent = section.dataset.textLoading;
    prev.disabled = next.disabled = true;
    return fetch(url, { headers: { Accept: "application/geo+json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.json();
      })
      .then(show)
      .catch(function () { status.textContent = section.dataset.textError; });
  }

  prev.addEventListener("click", function () {
    if (!links.prev) return;
    start = Math.max(0, start - limit);
    load(links.prev);
  });
  next.addEventListener("click", function () {
    if (!links.next) return;
    start += returned;
    load(links.next);
  });
  load(section.dataset.items + "?limit=" + limit + "&skipGeometry=true");
})();
