/* plansearch search page.
 *
 * One page, three views chosen by the URL:
 *   /                         the start page
 *   /?q=…&doc=…&year=…        answer + ranked results (filters optional)
 *   /?read=<doc_id>&sec=…&item=…&sub=…&q=…   a document's outline with one item highlighted
 * Navigation uses history.pushState, so links can be shared and back/forward work.
 *
 * Every text that comes from a document or a query is put into the page with
 * textContent / createTextNode, never parsed as HTML.
 */
"use strict";

(function () {
  const RESULTS_K = 10;
  const MAX_QUERY_CHARS = 500;

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("search-form"),
    input: $("q"),
    docFilter: $("doc-filter"),
    yearFilter: $("year-filter"),
    message: $("message"),
    homeView: $("home-view"),
    corpusStats: $("corpus-stats"),
    resultsView: $("results-view"),
    answerSlot: $("answer-slot"),
    resultMeta: $("result-meta"),
    results: $("results"),
    docView: $("doc-view"),
    backLink: $("back-link"),
    toTarget: $("to-target"),
    docTitle: $("doc-title"),
    docMeta: $("doc-meta"),
    docToc: $("doc-toc"),
    docTocList: $("doc-toc-list"),
    outline: $("doc-outline"),
  };

  const cache = new Map(); // API URL -> parsed JSON (successful responses only)
  const documentsById = new Map();
  let generation = 0; // the newest navigation; older responses are dropped
  let inflight = null;

  // -- small DOM helpers (text only) --------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "className") node.className = value;
        else if (key === "text") node.textContent = value;
        else if (key === "href") node.setAttribute("href", value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) append(node, child);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach((c) => append(node, c));
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(view) {
    for (const v of [ui.homeView, ui.resultsView, ui.docView]) v.hidden = v !== view;
  }

  function setMessage(kind, ...parts) {
    clear(ui.message);
    if (!kind) {
      ui.message.hidden = true;
      ui.message.className = "message";
      return;
    }
    ui.message.className = "message message-" + kind;
    ui.message.setAttribute("role", kind === "error" ? "alert" : "status");
    append(ui.message, parts);
    ui.message.hidden = false;
  }

  // -- URL state -------------------------------------------------------------
  function readState() {
    const p = new URLSearchParams(window.location.search);
    const opt = (name) => (p.has(name) ? p.get(name) : null);
    return {
      q: (p.get("q") || "").slice(0, MAX_QUERY_CHARS),
      doc: p.get("doc") || "",
      year: p.get("year") || "",
      read: p.get("read") || "",
      sec: opt("sec"),
      item: opt("item"),
      sub: opt("sub"),
    };
  }

  function searchUrl(q, doc, year) {
    const p = new URLSearchParams();
    if (q) p.set("q", q);
    if (doc) p.set("doc", doc);
    if (year) p.set("year", year);
    const s = p.toString();
    return s ? "?" + s : "/";
  }

  function readUrl(hit, state) {
    const p = new URLSearchParams();
    p.set("read", hit.doc_id);
    if (hit.section !== null && hit.section !== undefined) p.set("sec", hit.section);
    if (hit.item !== null && hit.item !== undefined) p.set("item", hit.item);
    if (hit.subitem !== null && hit.subitem !== undefined) p.set("sub", hit.subitem);
    if (state.q) p.set("q", state.q);
    if (state.doc) p.set("doc", state.doc);
    if (state.year) p.set("year", state.year);
    return "?" + p.toString();
  }

  function go(url, extra) {
    // Remember where the reader was on the page being left.
    const here = Object.assign({}, history.state || {}, { scroll: window.scrollY });
    history.replaceState(here, "");
    history.pushState(Object.assign({ scroll: 0 }, extra || {}), "", url);
    route();
  }

  // Links inside the page: plain clicks stay in the page, others behave as links.
  function internalLink(node, extra) {
    node.addEventListener("click", (event) => {
      if (event.defaultPrevented || event.button !== 0) return;
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      go(node.getAttribute("href"), extra);
    });
    return node;
  }

  // -- the API ---------------------------------------------------------------
  class ApiFailure extends Error {
    constructor(kind, status, detail) {
      super(detail || kind);
      this.kind = kind; // "network" | "http"
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, params) {
    const qs = params ? "?" + params.toString() : "";
    const url = path + qs;
    if (cache.has(url)) return cache.get(url);
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    let response;
    try {
      response = await fetch(url, { headers: apiHeaders(), signal: controller.signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiFailure("network", 0, "");
    } finally {
      if (inflight === controller) inflight = null;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      throw new ApiFailure("http", response.status, detail);
    }
    if (body === null) throw new ApiFailure("http", response.status, "响应不是有效的 JSON / invalid JSON response");
    cache.set(url, body);
    if (cache.size > 40) cache.delete(cache.keys().next().value);
    return body;
  }

  // -- the API token ------------------------------------------------------------
  // When the service is started with PLANSEARCH_API_TOKEN, every /api/ call needs it.
  // The page asks for it once and keeps it for this tab only (sessionStorage, never
  // the URL), sending it as "Authorization: Bearer …".
  const TOKEN_KEY = "plansearch-token";

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (err) {
      return "";
    }
  }

  function apiHeaders() {
    const headers = { Accept: "application/json" };
    const token = storedToken();
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }

  function askForToken() {
    const rejected = storedToken() !== "";
    const input = el("input", {
      id: "token-input",
      className: "token-input",
      type: "password",
      autocomplete: "off",
      "aria-label": "访问令牌",
      placeholder: "访问令牌",
    });
    const form = el(
      "form",
      { id: "token-form", className: "token-form" },
      el("strong", { text: rejected ? "访问令牌无效，请重新输入。" : "此检索服务需要访问令牌，请输入。" }),
      el("span", { className: "token-row" }, input, el("button", { type: "submit", className: "token-button", text: "确定" })),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch (err) {
        /* storage disabled: the token is lost on reload */
      }
      cache.clear();
      setMessage(null);
      loadDocuments();
      route();
    });
    setMessage("error", form);
    input.focus();
  }

  function showFailure(err) {
    if (err && err.name === "AbortError") return;
    if (err instanceof ApiFailure && err.kind === "http" && err.status === 401) {
      askForToken();
    } else if (err instanceof ApiFailure && err.kind === "http") {
      setMessage(
        "error",
        el("strong", { text: "检索服务返回了错误（HTTP " + err.status + "）" }),
        el("span", { className: "message-detail", text: err.detail || "" }),
      );
    } else if (err instanceof ApiFailure) {
      setMessage(
        "error",
        el("strong", { text: "无法连接检索服务" }),
        el("span", {
          className: "message-detail",
          text: "请确认服务正在运行（plansearch serve），然后刷新页面重试。",
        }),
      );
    } else {
      setMessage("error", el("strong", { text: "页面出错了" }), el("span", { text: String(err) }));
    }
  }

  // -- text with highlights --------------------------------------------------
  // Offsets from the API count Unicode code points (Python str indices); JS strings
  // count UTF-16 units, so work on an array of code points.
  function highlighted(text, highlights) {
    const frag = document.createDocumentFragment();
    const chars = Array.from(text || "");
    const n = chars.length;
    const term = new Uint8Array(n);
    const answer = new Uint8Array(n);
    for (const h of highlights || []) {
      const target = h.kind === "answer" ? answer : h.kind === "term" ? term : null;
      if (!target) continue;
      const start = Math.max(0, Number(h.start) | 0);
      const end = Math.min(n, Number(h.end) | 0);
      for (let i = start; i < end; i++) target[i] = 1;
    }
    const runs = (flags, from, to, each) => {
      let i = from;
      while (i < to) {
        let j = i;
        while (j < to && flags[j] === flags[i]) j++;
        each(i, j, flags[i] === 1);
        i = j;
      }
    };
    runs(answer, 0, n, (a, b, isAnswer) => {
      const holder = isAnswer ? el("span", { className: "hl-answer" }) : frag;
      runs(term, a, b, (c, d, isTerm) => {
        const piece = chars.slice(c, d).join("");
        append(holder, isTerm ? el("mark", { text: piece }) : piece);
      });
      if (isAnswer) frag.appendChild(holder);
    });
    return frag;
  }

  // -- citations -------------------------------------------------------------
  function labelText(label, unit) {
    if (!label) return null;
    const m = /^\s*(\d+)\s*[.．、]?\s*$/.exec(label);
    return m ? "第" + m[1] + unit : label;
  }

  function citationParts(hit) {
    return [
      "《" + hit.doc_title + "》",
      hit.section,
      labelText(hit.item, "条"),
      labelText(hit.subitem, "点"),
    ].filter((x) => x);
  }

  function citation(hit, className) {
    const parts = citationParts(hit);
    const node = el("span", { className: className || "citation", title: hit.citation || parts.join(" ") });
    parts.forEach((part, i) => {
      if (i) append(node, el("span", { className: "sep", "aria-hidden": "true", text: " · " }));
      append(node, el("span", { className: i === 0 ? "cite-doc" : "cite-part", text: part }));
    });
    return node;
  }

  // -- views -----------------------------------------------------------------
  function syncForm(state) {
    ui.input.value = state.q;
    setSelect(ui.docFilter, state.doc);
    setSelect(ui.yearFilter, state.year);
  }

  function setSelect(select, value) {
    if (value && !Array.from(select.options).some((o) => o.value === value)) {
      select.appendChild(el("option", { value, text: value }));
    }
    select.value = value;
  }

  function renderHome() {
    show(ui.homeView);
    setMessage(null);
    document.title = "规划文件检索";
  }

  async function renderResults(state, gen) {
    document.title = state.q + " – 规划文件检索";
    setMessage("info", "正在检索…");
    ui.resultsView.setAttribute("aria-busy", "true");
    const params = new URLSearchParams({ q: state.q, k: String(RESULTS_K) });
    if (state.doc) params.set("doc", state.doc);
    if (state.year) params.set("year", state.year);
    let data;
    try {
      data = await api("/api/ask", params);
    } catch (err) {
      if (gen !== generation) return;
      ui.resultsView.removeAttribute("aria-busy");
      show(null);
      showFailure(err);
      return;
    }
    if (gen !== generation) return;
    ui.resultsView.removeAttribute("aria-busy");
    setMessage(null);
    show(ui.resultsView);
    clear(ui.answerSlot);
    clear(ui.results);
    clear(ui.resultMeta);

    const passages = data.passages || [];
    if (!passages.length) {
      ui.answerSlot.appendChild(noResults(state));
      return;
    }
    if (data.answer) ui.answerSlot.appendChild(answerCard(data.answer, state));
    else {
      ui.answerSlot.appendChild(
        el(
          "div",
          { className: "notice", role: "note" },
          el("strong", { text: "语料中没有找到这个问题的答案" }),
          "，以下是最接近的条目。",
        ),
      );
    }
    ui.resultMeta.appendChild(resultMeta(state, passages.length, data.took_ms));
    passages.forEach((hit) => ui.results.appendChild(resultItem(hit, state)));
  }

  function filterSummary(state) {
    const bits = [];
    if (state.doc) {
      const d = documentsById.get(state.doc);
      bits.push("文件《" + (d ? d.title : state.doc) + "》");
    }
    if (state.year) bits.push(state.year + "年");
    return bits;
  }

  function resultMeta(state, count, tookMs) {
    const frag = document.createDocumentFragment();
    append(frag, el("span", { className: "count", text: "共 " + count + " 条结果" }));
    if (typeof tookMs === "number") {
      append(frag, el("span", { className: "took", text: "用时 " + Math.round(tookMs) + " 毫秒" }));
    }
    const bits = filterSummary(state);
    if (bits.length) append(frag, el("span", { className: "filtered", text: "已筛选：" + bits.join("，") }));
    return frag;
  }

  function noResults(state) {
    const box = el(
      "div",
      { className: "empty" },
      el("p", { className: "empty-title", text: "没有找到相关内容" }),
      el("p", { text: "可以换个说法，或者用更短、更具体的关键词再试一次。" }),
    );
    if (state.doc || state.year) {
      const link = internalLink(el("a", { href: searchUrl(state.q, "", ""), className: "button-link" }, "清除筛选后再搜索"));
      box.appendChild(el("p", null, "当前只在" + filterSummary(state).join("，") + "中检索。", link));
    }
    return box;
  }

  function answerCard(answer, state) {
    const card = el("section", { className: "answer-card", "aria-label": "答案" });
    card.appendChild(el("p", { className: "answer-kicker", text: "答案" }));
    if (answer.short_answer) card.appendChild(el("p", { className: "answer-short", text: answer.short_answer }));
    card.appendChild(el("p", { className: "answer-text" }, highlighted(answer.text, answer.highlights)));
    const link = internalLink(el("a", { href: readUrl(answer, state), className: "answer-link" }, "在原文中查看 →"), {
      from: "results",
    });
    card.appendChild(el("p", { className: "answer-source" }, el("span", { className: "label", text: "出处" }), citation(answer)));
    card.appendChild(link);
    return card;
  }

  function resultItem(hit, state) {
    const href = readUrl(hit, state);
    const tags = [hit.year ? hit.year + "年" : null, hit.region].filter((x) => x);
    return el(
      "li",
      { className: "result" },
      internalLink(
        el(
          "a",
          { className: "result-cite", href },
          el("span", { className: "rank", "aria-label": "第" + hit.rank + "名", text: String(hit.rank) }),
          citation(hit),
        ),
        { from: "results" },
      ),
      el("p", { className: "result-text" }, highlighted(hit.text, hit.highlights)),
      el(
        "div",
        { className: "result-foot" },
        tags.map((t) => el("span", { className: "tag", text: t })),
        internalLink(el("a", { className: "context-link", href }, "在原文中查看"), { from: "results" }),
      ),
    );
  }

  async function renderDocument(state, gen) {
    setMessage("info", "正在打开文件…");
    let data;
    try {
      data = await api("/api/documents/" + encodeURIComponent(state.read));
    } catch (err) {
      if (gen !== generation) return;
      show(null);
      showFailure(err);
      return;
    }
    if (gen !== generation) return;
    setMessage(null);
    document.title = data.title + " – 规划文件检索";

    const backHref = state.q ? searchUrl(state.q, state.doc, state.year) : "/";
    ui.backLink.setAttribute("href", backHref);
    ui.backLink.textContent = state.q ? "← 返回搜索结果" : "← 返回首页";

    ui.docTitle.textContent = data.title;
    clear(ui.docMeta);
    const meta = [
      data.issuer,
      data.year ? data.year + "年" : null,
      data.region,
      "来源文件 " + data.source_file,
    ].filter((x) => x);
    meta.forEach((m) => ui.docMeta.appendChild(el("span", { text: m })));

    clear(ui.outline);
    clear(ui.docTocList);
    const target = findTarget(data.items || [], state);
    let section;
    let sectionNode = null;
    let sectionCount = 0;
    let targetNode = null;
    (data.items || []).forEach((it) => {
      if (sectionNode === null || it.section !== section) {
        section = it.section;
        sectionCount += 1;
        const id = "sec-" + sectionCount;
        sectionNode = el("section", { className: "sec", id });
        if (section) {
          sectionNode.appendChild(el("h2", { className: "sec-title", text: section }));
          const tocLink = el("a", { href: "#" + id, text: section });
          tocLink.addEventListener("click", (event) => {
            event.preventDefault();
            document.getElementById(id).scrollIntoView({ behavior: "smooth", block: "start" });
          });
          ui.docTocList.appendChild(el("li", null, tocLink));
        }
        ui.outline.appendChild(sectionNode);
      }
      const node = outlineItem(it);
      if (it === target) {
        node.classList.add("is-target");
        node.setAttribute("aria-current", "true");
        node.setAttribute("tabindex", "-1");
        node.insertBefore(el("span", { className: "target-badge", text: "引用的条目" }), node.firstChild);
        targetNode = node;
      }
      sectionNode.appendChild(node);
    });
    ui.docToc.hidden = ui.docTocList.childElementCount < 2;
    ui.toTarget.hidden = !targetNode;
    show(ui.docView);
    if (targetNode) {
      targetNode.scrollIntoView({ block: "center" });
      targetNode.focus({ preventScroll: true });
    } else {
      if (state.sec !== null || state.item !== null || state.sub !== null) {
        setMessage("info", "在这份文件中没有找到所引用的条目，下面显示全文。");
      }
      window.scrollTo(0, 0);
    }
  }

  function findTarget(items, state) {
    if (state.sec === null && state.item === null && state.sub === null) return null;
    return items.find((it) => it.section === state.sec && it.item === state.item && it.subitem === state.sub) || null;
  }

  function outlineItem(it) {
    const kind = it.kind || "item";
    const label = kind === "subitem" ? it.subitem : kind === "preamble" ? null : it.item;
    const node = el("div", { className: "unit unit-" + kind });
    if (label) node.appendChild(el("span", { className: "unit-label", text: label }));
    node.appendChild(el("p", { className: "unit-text", text: it.text }));
    return node;
  }

  // -- routing ---------------------------------------------------------------
  async function route() {
    const gen = ++generation;
    const state = readState();
    syncForm(state);
    if (state.read) {
      await renderDocument(state, gen);
    } else if (state.q.trim()) {
      await renderResults(state, gen);
    } else {
      renderHome();
    }
    if (gen === generation && !state.read) {
      const scroll = (history.state && history.state.scroll) || 0;
      window.scrollTo(0, scroll);
    }
  }

  function submitSearch() {
    const q = ui.input.value.trim();
    if (!q) {
      setMessage("info", "请输入要搜索的问题或关键词。");
      ui.input.focus();
      return;
    }
    if (q.length > MAX_QUERY_CHARS) {
      setMessage("error", "查询太长了，请不要超过 " + MAX_QUERY_CHARS + " 个字符。");
      return;
    }
    ui.input.blur(); // closes the phone keyboard
    go(searchUrl(q, ui.docFilter.value, ui.yearFilter.value));
  }

  async function loadDocuments() {
    let data;
    try {
      data = await fetch("/api/documents", { headers: apiHeaders() }).then((r) => {
        if (r.status === 401) throw new ApiFailure("http", 401, "");
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      });
    } catch (err) {
      ui.docFilter.disabled = true;
      ui.yearFilter.disabled = true;
      if (err instanceof ApiFailure && err.status === 401) askForToken();
      else if (!ui.homeView.hidden) showFailure(new ApiFailure("network", 0, ""));
      return;
    }
    ui.docFilter.disabled = false;
    ui.yearFilter.disabled = false;
    const docs = data.documents || [];
    const years = new Set();
    let passages = 0;
    for (const d of docs) {
      documentsById.set(d.doc_id, d);
      if (d.year) years.add(d.year);
      passages += d.passage_count || 0;
      const label = d.title + (d.year ? "（" + d.year + "）" : "");
      if (!Array.from(ui.docFilter.options).some((o) => o.value === d.doc_id)) {
        ui.docFilter.appendChild(el("option", { value: d.doc_id, text: label }));
      } else {
        Array.from(ui.docFilter.options).find((o) => o.value === d.doc_id).textContent = label;
      }
    }
    Array.from(years)
      .sort((a, b) => b - a)
      .forEach((y) => {
        const value = String(y);
        if (!Array.from(ui.yearFilter.options).some((o) => o.value === value)) {
          ui.yearFilter.appendChild(el("option", { value, text: value + "年" }));
        }
      });
    const state = readState();
    setSelect(ui.docFilter, state.doc);
    setSelect(ui.yearFilter, state.year);
    ui.corpusStats.textContent = "已收录 " + docs.length + " 份文件，共 " + passages + " 个条目。";
  }

  function onFilterChange() {
    const state = readState();
    const q = state.read ? state.q : ui.input.value.trim() || state.q;
    if (q) go(searchUrl(q, ui.docFilter.value, ui.yearFilter.value));
    else history.replaceState(history.state, "", searchUrl("", ui.docFilter.value, ui.yearFilter.value));
  }

  function init() {
    if ("scrollRestoration" in history) history.scrollRestoration = "manual";
    ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submitSearch();
    });
    ui.docFilter.addEventListener("change", onFilterChange);
    ui.yearFilter.addEventListener("change", onFilterChange);
    ui.backLink.addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      if (history.state && history.state.from === "results") history.back();
      else go(ui.backLink.getAttribute("href"));
    });
    ui.toTarget.addEventListener("click", (event) => {
      event.preventDefault();
      const node = ui.outline.querySelector(".is-target");
      if (node) node.scrollIntoView({ behavior: "smooth", block: "center" });
    });
    $("home-link").addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      ui.docFilter.value = "";
      ui.yearFilter.value = "";
      go("/");
    });
    for (const a of document.querySelectorAll("#examples a")) internalLink(a);
    window.addEventListener("popstate", route);
    loadDocuments();
    route();
  }

  init();
})();
