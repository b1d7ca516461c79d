// The night: sort by a column, filter, choose columns (kept in localStorage), rows added and
// updated live from the feed's "row" events. Cells come formatted from the server (one formatter).
"use strict";

(function () {
  const RA = window.RA;
  const table = document.getElementById("night");
  const tbody = table.tBodies[0];
  const instrument = table.dataset.instrument;
  const dayObs = Number(table.dataset.dayObs);
  const columns = RA.readJson("columns");
  const columnsKey = "ra.night.columns." + instrument;
  const sortKey = "ra.night.sort." + instrument;
  const filterInput = document.getElementById("filter");
  const stateFilter = document.getElementById("state-filter");
  const count = document.getElementById("row-count");

  function load(key, fallback) {
    try {
      const value = JSON.parse(localStorage.getItem(key));
      return value === null ? fallback : value;
    } catch (e) {
      return fallback;
    }
  }

  function store(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch (e) {
      // storage full or refused: the choice lasts until reload
    }
  }

  // -- columns --
  let visible = load(
    columnsKey,
    columns.filter((c) => c.default).map((c) => c.key)
  );

  function applyColumns(root) {
    root.querySelectorAll("[data-col]").forEach(function (node) {
      if (node.tagName === "INPUT") return;
      node.hidden = visible.indexOf(node.dataset.col) < 0;
    });
  }

  document.querySelectorAll("#column-choices input").forEach(function (box) {
    box.checked = visible.indexOf(box.dataset.col) >= 0;
    box.addEventListener("change", function () {
      visible = columns.map((c) => c.key).filter(function (key) {
        const b = document.querySelector('#column-choices input[data-col="' + key + '"]');
        return b && b.checked;
      });
      store(columnsKey, visible);
      applyColumns(table);
      applyFilter();
    });
  });

  // -- sorting --
  let sort = load(sortKey, { col: "seq_num", dir: "desc" });

  function sortValue(tr) {
    const td = tr.querySelector('td[data-col="' + sort.col + '"]');
    return td ? td.dataset.sort : "";
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === "") return 1; // no value: last, either way
    if (b === "") return -1;
    const x = Number(a);
    const y = Number(b);
    const order = isFinite(x) && isFinite(y) ? x - y : a.localeCompare(b);
    return sort.dir === "asc" ? order : -order;
  }

  function applySort() {
    const rows = Array.from(tbody.rows);
    const keyed = rows.map((tr) => [sortValue(tr), tr]);
    keyed.sort((p, q) => compare(p[0], q[0]));
    keyed.forEach((p) => tbody.appendChild(p[1]));
    table.querySelectorAll("th").forEach(function (th) {
      th.classList.remove("sorted-asc", "sorted-desc");
      if (th.dataset.col === sort.col) th.classList.add("sorted-" + sort.dir);
    });
  }

  table.querySelectorAll("th").forEach(function (th) {
    th.addEventListener("click", function () {
      if (sort.col === th.dataset.col) {
        sort = { col: sort.col, dir: sort.dir === "asc" ? "desc" : "asc" };
      } else {
        sort = { col: th.dataset.col, dir: "asc" };
      }
      store(sortKey, sort);
      applySort();
    });
  });

  // -- filtering --
  function applyFilter() {
    const text = filterInput.value.trim().toLowerCase();
    const state = stateFilter.value;
    let shown = 0;
    Array.from(tbody.rows).forEach(function (tr) {
      let match = !state || tr.dataset.state === state;
      if (match && text) {
        const words = Array.from(tr.cells)
          .filter((td) => !td.hidden)
          .map((td) => td.textContent.toLowerCase())
          .join(" ");
        match = words.indexOf(text) >= 0;
      }
      tr.hidden = !match;
      if (match) shown += 1;
    });
    const total = tbody.rows.length;
    count.textContent = shown === total ? total + " images" : shown + " of " + total + " images";
  }

  filterInput.addEventListener("input", applyFilter);
  stateFilter.addEventListener("change", applyFilter);

  // -- live rows --
  function buildRow(row) {
    const tr = document.createElement("tr");
    tr.dataset.image = row.image_name;
    tr.dataset.state = row.state;
    columns.forEach(function (c) {
      const cell = row.cells[c.key] || { text: "", sort: "" };
      const td = document.createElement("td");
      td.dataset.col = c.key;
      td.dataset.sort = cell.sort === null || cell.sort === undefined ? "" : String(cell.sort);
      if (cell.title) td.title = cell.title;
      if (cell.cls) td.className = cell.cls;
      if (c.key === "image_name") {
        const a = RA.el("a", cell.text);
        a.href = row.href;
        td.appendChild(a);
      } else {
        td.textContent = cell.text;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function upsert(row) {
    const fresh = buildRow(row);
    const old = Array.from(tbody.rows).find((tr) => tr.dataset.image === row.image_name);
    if (old) {
      tbody.replaceChild(fresh, old);
    } else {
      tbody.appendChild(fresh);
    }
    fresh.classList.add("updated");
    setTimeout(() => fresh.classList.remove("updated"), 3000);
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
  }

  function refresh() {
    applyColumns(table);
    applySort();
    applyFilter();
  }

  function reload() {
    // After an overflow or a reconnection: rows may have been missed; fetch them all again.
    fetch("/night/" + encodeURIComponent(instrument) + "/" + dayObs + ".json")
      .then((response) => (response.ok ? response.json() : { rows: [] }))
      .then(function (data) {
        data.rows.forEach(upsert);
        refresh();
      })
      .catch(function () {});
  }

  refresh();
  if (table.dataset.live !== "true") return; // this instrument's CSC is not followed: nothing comes
  let snapshots = 0;
  RA.connect({
    row: function (message) {
      if (message.instrument !== instrument) return;
      if (Number(message.row.day_obs) > dayObs) {
        // Tonight rolled over (or this is an old night): say where the new images go.
        const note = document.getElementById("newer-night");
        note.querySelector("a").href = "/night/" + encodeURIComponent(instrument) + "/" + Number(message.row.day_obs);
        note.hidden = false;
        return;
      }
      if (Number(message.row.day_obs) !== dayObs) return;
      upsert(message.row);
      refresh();
    },
    snapshot: function () {
      snapshots += 1;
      if (snapshots > 1) reload();
    },
    overflow: function () {},
  }, "row");
})();
