// The review page's paths: a lazy folder tree, a paged list with search, the exceptions.
// Everything comes from this page's own JSON routes, a page at a time; names are set as text, never HTML.
"use strict";

(function () {
  // A page waiting for the person follows decisions made elsewhere (a terminal, another tab): it reloads to
  // show the outcome instead of offering buttons that would decide nothing.
  const status = document.getElementById("status");
  if (status && status.dataset.status === "pending") {
    const timer = setInterval(async function () {
      try {
        const answer = await fetch("api/status", { credentials: "same-origin", cache: "no-store" });
        if (!answer.ok) return;
        const now = (await answer.json()).status;
        if (now !== "pending") { clearInterval(timer); location.replace("./"); }
      } catch (e) { /* the server may be restarting: try again */ }
    }, 3000);
  }
})();

(function () {
  const PAGE = 100;
  const CHILDREN_PAGE = 200;
  const browse = document.getElementById("browse");
  if (!browse || browse.hidden) return;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function get(route, params) {
    const query = new URLSearchParams(params);
    const answer = await fetch(route + "?" + query.toString(), { credentials: "same-origin", cache: "no-store" });
    if (!answer.ok) {
      let message = "The page could not load this (" + answer.status + ").";
      try { message = (await answer.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return answer.json();
  }

  function kindText(row) {
    if (row.kind === "group") return "folder (contains paths)";
    if (row.kind === "directory") return "folder, whole tree";
    return row.kind;
  }

  function cells(tr, row, nameCell) {
    tr.appendChild(nameCell);
    tr.appendChild(el("td", {}, kindText(row)));
    tr.appendChild(el("td", { class: "num", "data-bytes": row.size }, (row.complete ? "" : "≥ ") + row.size_text));
    tr.appendChild(el("td", { class: "num" }, Number(row.files).toLocaleString()));
    tr.appendChild(el("td", { title: row.newest || "" }, row.age || ""));
  }

  // ------------------------------------------------------------------ tabs

  const tabs = ["tree", "paths", "exceptions"];
  function select(name) {
    for (const tab of tabs) {
      document.getElementById("tab-" + tab).setAttribute("aria-selected", String(tab === name));
      document.getElementById("panel-" + tab).hidden = tab !== name;
    }
  }
  for (const tab of tabs) {
    document.getElementById("tab-" + tab).addEventListener("click", function () {
      select(tab);
      if (tab === "paths" && !pathsLoaded) showPaths(0);
      if (tab === "exceptions" && !exceptionsLoaded) showExceptions(0);
    });
  }

  function failed(body, columns, error) {
    body.replaceChildren();
    const tr = el("tr");
    tr.appendChild(el("td", { colspan: columns }, error.message));
    body.appendChild(tr);
  }

  // ------------------------------------------------------------------ the folder tree

  const treeBody = document.getElementById("tree-body");

  function treeRow(row, depth) {
    const tr = el("tr", { class: "d" + Math.min(depth, 9), "data-path": row.path, "data-depth": depth, "data-kind": row.kind });
    const td = el("td");
    const cell = el("div", { class: "cell" });
    if (row.expandable) {
      const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-label": "Open " + row.name }, "▸");
      toggle.addEventListener("click", function () { toggleFolder(tr, toggle, row, depth); });
      cell.appendChild(toggle);
    } else {
      cell.appendChild(el("span", { class: "toggle", "aria-hidden": "true" }, ""));
    }
    cell.appendChild(el("span", { class: "name" }, row.name));
    if (row.in_plan) cell.appendChild(el("span", { class: "badge plan" }, row.kind === "directory" ? "in the plan, whole" : "in the plan"));
    else cell.appendChild(el("span", { class: "badge" }, row.items.toLocaleString() + " paths inside"));
    td.appendChild(cell);
    cells(tr, row, td);
    return tr;
  }

  function descendantsOf(tr) {
    const depth = Number(tr.dataset.depth);
    const found = [];
    let next = tr.nextElementSibling;
    while (next && Number(next.dataset.depth) > depth) {
      found.push(next);
      next = next.nextElementSibling;
    }
    return found;
  }

  async function loadChildren(after, folder, depth, offset) {
    const page = await get("api/children", { folder: folder || "", offset: offset, limit: CHILDREN_PAGE });
    let anchor = after;
    const rows = page.items.map(function (row) { return treeRow(row, depth); });
    for (const tr of rows) {
      if (anchor) anchor.after(tr); else treeBody.appendChild(tr);
      anchor = tr;
    }
    const left = page.total - (offset + page.items.length);
    if (left > 0) {
      const tr = el("tr", { class: "more d" + Math.min(depth, 9), "data-depth": depth });
      const td = el("td", { colspan: 5 });
      const more = el("button", { type: "button" }, "Show " + Math.min(left, CHILDREN_PAGE).toLocaleString() + " more (" + left.toLocaleString() + " left)");
      more.addEventListener("click", async function () {
        const before = tr.previousElementSibling;
        tr.remove();
        await loadChildren(before, folder, depth, offset + page.items.length);
      });
      td.appendChild(el("div", { class: "cell" })).appendChild(more);
      tr.appendChild(td);
      if (anchor) anchor.after(tr); else treeBody.appendChild(tr);
    }
    return page;
  }

  async function toggleFolder(tr, toggle, row, depth) {
    if (toggle.getAttribute("aria-expanded") === "true") {
      for (const child of descendantsOf(tr)) child.remove();
      toggle.setAttribute("aria-expanded", "false");
      toggle.textContent = "▸";
      return;
    }
    toggle.setAttribute("aria-expanded", "true");
    toggle.textContent = "▾";
    try {
      await loadChildren(tr, row.path, depth + 1, 0);
    } catch (error) {
      toggle.setAttribute("aria-expanded", "false");
      toggle.textContent = "▸";
      alert(error.message);
    }
  }

  (async function () {
    try {
      const page = await loadChildren(null, "", 0, 0);
      const top = page.folder;
      document.getElementById("tree-top").textContent =
        "In " + top.shown + ": " + top.items.toLocaleString() + " paths, " + top.size_text + ", " +
        Number(top.files).toLocaleString() + " files" + (top.age ? ", newest change " + top.age : "") + ".";
    } catch (error) {
      failed(treeBody, 5, error);
    }
  })();

  // ------------------------------------------------------------------ every path, paged and searched

  const pathsBody = document.getElementById("paths-body");
  const pathsRange = document.getElementById("paths-range");
  const pathsPrev = document.getElementById("paths-prev");
  const pathsNext = document.getElementById("paths-next");
  const search = document.getElementById("search");
  let pathsLoaded = false;
  let pathsOffset = 0;
  let pathsTotal = 0;
  let request = 0;

  async function showPaths(offset) {
    const mine = ++request;
    pathsLoaded = true;
    try {
      const page = await get("api/paths", { q: search.value, offset: offset, limit: PAGE });
      if (mine !== request) return;
      pathsOffset = page.offset;
      pathsTotal = page.total;
      pathsBody.replaceChildren();
      for (const row of page.items) {
        const tr = el("tr", { "data-path": row.path, "data-kind": row.kind });
        cells(tr, row, el("td", {}, row.shown));
        pathsBody.appendChild(tr);
      }
      const last = page.offset + page.items.length;
      pathsRange.textContent = page.total
        ? (page.offset + 1).toLocaleString() + "–" + last.toLocaleString() + " of " + page.total.toLocaleString() + (search.value ? " matching" : "")
        : (search.value ? "No path matches." : "No paths.");
      pathsPrev.disabled = page.offset === 0;
      pathsNext.disabled = last >= page.total;
    } catch (error) {
      failed(pathsBody, 5, error);
    }
  }
  pathsPrev.addEventListener("click", function () { showPaths(Math.max(0, pathsOffset - PAGE)); });
  pathsNext.addEventListener("click", function () { if (pathsOffset + PAGE < pathsTotal) showPaths(pathsOffset + PAGE); });
  let typing = null;
  search.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () { select("paths"); showPaths(0); }, 200);
  });

  // ------------------------------------------------------------------ refused or missing

  const exceptionsBody = document.getElementById("exceptions-body");
  const exceptionsRange = document.getElementById("exceptions-range");
  const exceptionsPrev = document.getElementById("exceptions-prev");
  const exceptionsNext = document.getElementById("exceptions-next");
  let exceptionsLoaded = false;
  let exceptionsOffset = 0;

  async function showExceptions(offset) {
    exceptionsLoaded = true;
    try {
      const page = await get("api/exceptions", { offset: offset, limit: PAGE });
      exceptionsOffset = page.offset;
      exceptionsBody.replaceChildren();
      for (const row of page.items) {
        const tr = el("tr", { "data-path": row.path });
        tr.appendChild(el("td", {}, row.shown));
        tr.appendChild(el("td", {}, row.status));
        tr.appendChild(el("td", {}, row.reason));
        exceptionsBody.appendChild(tr);
      }
      const last = page.offset + page.items.length;
      exceptionsRange.textContent = page.total
        ? (page.offset + 1).toLocaleString() + "–" + last.toLocaleString() + " of " + page.total.toLocaleString()
        : "Nothing was refused or missing.";
      exceptionsPrev.disabled = page.offset === 0;
      exceptionsNext.disabled = last >= page.total;
    } catch (error) {
      failed(exceptionsBody, 3, error);
    }
  }
  exceptionsPrev.addEventListener("click", function () { showExceptions(Math.max(0, exceptionsOffset - PAGE)); });
  exceptionsNext.addEventListener("click", function () { showExceptions(exceptionsOffset + PAGE); });
})();
