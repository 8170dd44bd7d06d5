// Turns the rendered DOM into text for a text-only model. Everything a person can
// act on becomes a numbered marker 【id†…】, one id per element, and the element gets
// a data-harmony-id attribute so an action can find that very element again.
// Clickable means: a link, a form control, an ARIA widget role, a summary, an element
// with an onclick property or a click-like listener (recorded by hooks.js), or the
// outermost element with a computed `cursor: pointer`. Runs via Playwright's evaluate().
(wantHtml) => {
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "HEAD", "SVG", "CANVAS", "IFRAME", "OBJECT"]);
  const BLOCK = new Set(["ADDRESS", "ARTICLE", "ASIDE", "BLOCKQUOTE", "BODY", "DD", "DETAILS", "DIV", "DL", "DT",
    "FIELDSET", "FIGCAPTION", "FIGURE", "FOOTER", "FORM", "H1", "H2", "H3", "H4", "H5", "H6", "HEADER", "HR", "LI",
    "MAIN", "NAV", "OL", "P", "PRE", "SECTION", "SUMMARY", "TABLE", "TBODY", "THEAD", "TFOOT", "TR", "UL", "CAPTION"]);
  const PARAGRAPH = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "TABLE", "UL", "OL", "PRE", "BLOCKQUOTE", "FORM",
    "SECTION", "ARTICLE", "HEADER", "FOOTER", "NAV", "MAIN", "FIGURE", "DL"]);
  const TEXT_INPUTS = new Set(["text", "search", "email", "password", "number", "url", "tel", "date", "time",
    "datetime-local", "month", "week", "color", "range", ""]);
  const NATIVE = new Set(["INPUT", "SELECT", "TEXTAREA", "BUTTON"]);
  const ROLES = new Set(["button", "checkbox", "radio", "tab", "menuitem", "menuitemcheckbox", "menuitemradio",
    "switch", "option", "treeitem", "link", "combobox"]);
  const LISTS = new Set(["UL", "OL", "TBODY", "TABLE", "DL"]);
  const LIST_ROLES = new Set(["listbox", "menu", "menubar", "tree", "tablist", "grid", "radiogroup"]);
  const GENERIC_CLASS = /^(corner|state|widget|helper|button-text|icon$|icon-only|clearfix|btn$|btn-(default|sm|xs|lg)|active|hover|focus|disabled|selected)|(^|-)(corner|state|widget)-/;
  const ACTION_WORDS = /(^|[-_])(up|down|left|right|prev|previous|next|increase|decrease|increment|decrement|plus|minus|add|remove|delete|trash|close|star|edit|search|menu|expand|collapse|open|play|pause|stop|reply|forward|send|save|refresh|more|less|first|last|triangle-1-[nsew]|arrow)([-_]|$)/;
  const COLLAPSE_CHARS = 120;
  const CONTAINER_CHARS = 400;
  const hooks = window.__harmonyHooks;
  const pageHost = location.host;
  const pageDoc = location.href.split("#")[0];
  const out = [];
  const links = {};
  const controls = {};
  const hidden = [];
  let nextId = 0;
  let images = 0;
  document.querySelectorAll("[data-harmony-id]").forEach((el) => el.removeAttribute("data-harmony-id"));

  const clean = (s) => (s || "").replace(/\s+/g, " ").trim();
  const escapeText = (s) => s.replace(/【/g, "〖").replace(/】/g, "〗");
  const escapeMarker = (s) => escapeText(s).replace(/†/g, "‡");
  const short = (s) => (s.length > COLLAPSE_CHARS ? s.slice(0, COLLAPSE_CHARS - 1) + "…" : s);
  const styleOf = (el) => getComputedStyle(el);
  const visible = (el) => {
    if (el.checkVisibility) return el.checkVisibility({ checkVisibilityCSS: true });
    const style = styleOf(el);
    return style.display !== "none" && style.visibility !== "hidden";
  };
  const listens = (el) => !!(el.onclick || el.onmousedown || el.onmouseup || el.onpointerdown || (hooks && hooks.clicky.has(el)));
  const pointer = (el) => {
    if (styleOf(el).cursor !== "pointer") return false;
    const parent = el.parentElement;
    return !parent || styleOf(parent).cursor !== "pointer";  // the outermost such element
  };
  const roleOf = (el) => (el.getAttribute("role") || "").toLowerCase();
  const interactiveInside = (el) => {
    if (el.querySelector("a[href], input, select, textarea, button, [role=button], [role=tab], [role=option], " +
      "[role=menuitem], [role=treeitem], [role=checkbox], [onclick]") !== null) return true;
    const inner = el.getElementsByTagName("*");
    for (let i = 0; i < inner.length && i < 300; i++) if (listens(inner[i])) return true;
    return false;
  };
  const clickable = (el, tag) => {
    if (tag === "BODY" || tag === "HTML") return false;
    return ROLES.has(roleOf(el)) || tag === "SUMMARY" || listens(el) || pointer(el);
  };
  const nameOf = (el) => {
    const aria = el.getAttribute("aria-label");
    if (aria && clean(aria)) return clean(aria);
    const by = el.getAttribute("aria-labelledby");
    if (by) {
      const text = clean(by.split(/\s+/).map((id) => (document.getElementById(id) || {}).innerText || "").join(" "));
      if (text) return text;
    }
    const text = clean(el.innerText);
    if (text) return text;
    const title = el.getAttribute("title") || (el.querySelector("[title]") || { getAttribute: () => "" }).getAttribute("title");
    if (clean(title)) return clean(title);
    const img = el.tagName === "IMG" ? el : el.querySelector("img[alt]");
    if (img && clean(img.getAttribute("alt"))) return clean(img.getAttribute("alt"));
    if (el.value && typeof el.value === "string") return clean(el.value);
    const hint = classHint(el);
    return hint ? `[${hint}]` : (el.id ? `[#${el.id}]` : `[${el.tagName.toLowerCase()}]`);
  };
  // An icon-only control is named from its classes and its icon's: those that say what it does come first
  // (ui-spinner-up: "spinner-up"), and a framework's prefix and its generic classes (corner, state) are dropped.
  const classesOf = (el) => clean(String(el.className && el.className.baseVal !== undefined ? el.className.baseVal : el.className || "")).split(" ");
  const classHint = (el) => {
    const own = classesOf(el);
    const inner = Array.from(el.querySelectorAll("[class]")).slice(0, 4).flatMap(classesOf);
    const names = [];
    for (const c of [...own, ...inner]) {
      const name = c.replace(/^(ui|js|is|has|fa|glyphicon|bi|icon)-/, "");
      if (!name || GENERIC_CLASS.test(name) || names.includes(name)) continue;
      names.push(name);
    }
    const telling = names.filter((n) => ACTION_WORDS.test(n));
    return telling.length ? telling[0] : names.slice(0, 2).join(" ");
  };
  const labelOf = (el) => {
    const byAria = el.getAttribute("aria-label");
    if (byAria) return clean(byAria);
    if (el.labels && el.labels.length) return clean(Array.from(el.labels).map((l) => l.innerText).join(" "));
    return clean(el.getAttribute("placeholder") || el.getAttribute("title") || el.name || el.id || "");
  };
  const mark = (el, info) => {
    const id = nextId++;
    el.setAttribute("data-harmony-id", String(id));
    controls[id] = info;
    return id;
  };
  const emit = (s) => out.push(s);
  const last = () => (out.length ? out[out.length - 1] : "\n");
  const newline = () => { if (!last().endsWith("\n")) out.push("\n"); };
  const paragraph = () => {
    newline();
    const tail = (out.length > 1 ? out[out.length - 2] : "") + last();
    if (out.length && !tail.endsWith("\n\n")) out.push("\n");
  };
  const focusedNote = (el) => (document.activeElement === el ? " (focused)" : "");
  const states = (el) => {
    const said = [];
    if (el.getAttribute("aria-selected") === "true") said.push("selected");
    if (el.getAttribute("aria-checked") === "true") said.push("checked");
    if (el.getAttribute("aria-expanded") === "true") said.push("expanded");
    if (el.getAttribute("aria-expanded") === "false") said.push("collapsed");
    if (el.getAttribute("aria-disabled") === "true" || el.disabled) said.push("disabled");
    if (document.activeElement === el) said.push("focused");
    return said.length ? ` (${said.join(", ")})` : "";
  };

  const control = (el) => {
    const tag = el.tagName;
    const type = (el.getAttribute("type") || "").toLowerCase();
    if (tag === "INPUT" && type === "hidden") return;
    const widget = tag === "BUTTON" && ROLES.has(roleOf(el)) && !["button", "link"].includes(roleOf(el));  // a tab, option...
    if (((tag === "INPUT" && ["submit", "button", "reset", "image"].includes(type)) || tag === "BUTTON") && !widget) {
      const text = nameOf(el) || type || "button";
      const id = mark(el, { kind: "button", label: text, disabled: el.disabled });
      const said = [el.disabled && "disabled", document.activeElement === el && "focused"].filter(Boolean);
      emit(` 【${id}†button: ${escapeMarker(short(text))}${said.length ? ` (${said.join(", ")})` : ""}】 `);
    } else if (tag === "INPUT" && (type === "checkbox" || type === "radio")) {
      const label = labelOf(el);
      const id = mark(el, { kind: type, label, checked: el.checked });
      const box = type === "checkbox" ? (el.checked ? "[x]" : "[ ]") : (el.checked ? "(*)" : "( )");
      emit(` 【${id}†${type} ${box} ${escapeMarker(label)}${focusedNote(el)}】 `);
    } else if (tag === "SELECT") {
      const label = labelOf(el);
      const options = Array.from(el.options).map((o) => clean(o.label || o.text));
      // Every chosen option: a list that allows several says so, and shows them all.
      const chosen = Array.from(el.options).filter((o) => o.selected).map((o) => clean(o.label || o.text)).join(" | ");
      const id = mark(el, { kind: "select", label, value: chosen, options, multiple: el.multiple });
      const what = el.multiple ? "select (several)" : "select";
      emit(` 【${id}†${what} "${escapeMarker(label)}" = ${escapeMarker(chosen)}; options: ${escapeMarker(options.join(" | "))}${focusedNote(el)}】 `);
    } else if (tag === "TEXTAREA" || (tag === "INPUT" && TEXT_INPUTS.has(type))) {
      const label = labelOf(el);
      const shown = type === "password" ? "•".repeat(el.value.length) : el.value;
      const id = mark(el, { kind: "textbox", label, value: shown, type: type || "text" });
      const hint = !shown && el.getAttribute("placeholder") ? ` (placeholder: ${clean(el.getAttribute("placeholder"))})` : "";
      const focused = focusedNote(el);
      const what = tag === "TEXTAREA" ? "textarea" : `${type && type !== "text" ? type + " " : ""}input`;
      emit(` 【${id}†${what} "${escapeMarker(label)}" = "${escapeMarker(shown)}"${escapeMarker(hint)}${focused}】 `);
    } else if (tag === "INPUT") {
      const id = mark(el, { kind: "input", label: labelOf(el), type });
      emit(` 【${id}†${type} input "${escapeMarker(labelOf(el))}"${focusedNote(el)}】 `);
    } else {
      const role = roleOf(el);
      const text = nameOf(el);
      const id = mark(el, { kind: role || "clickable", label: text });
      const prefix = role && role !== "button" && role !== "link" ? `${role}: ` : "";
      emit(` 【${id}†${prefix}${escapeMarker(short(text))}${states(el)}】 `);
    }
  };

  const link = (el) => {
    const url = el.href;
    const text = nameOf(el) || url;
    // A link that only moves within this document, or whose click runs a script, is an element to click.
    const inPage = url.split("#")[0] === pageDoc && url.includes("#") || listens(el);
    let host = "";
    try { host = new URL(url).host; } catch (e) { host = ""; }
    const domain = host && host !== pageHost ? `†${escapeMarker(host)}` : "";
    let id;
    if (inPage) id = mark(el, { kind: "link", label: text, url });
    else {
      id = nextId++;
      el.setAttribute("data-harmony-id", String(id));
      links[id] = { url, text };
    }
    emit(`【${id}†${escapeMarker(short(text))}${domain}】`);
  };

  // `items` is set inside a list whose click listener serves its items (event delegation).
  const walk = (node, items) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.replace(/\s+/g, " ");
      if (text.trim()) emit(escapeText(text));
      else if (text && !/[\s]$/.test(last())) emit(" ");
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const el = node;
    const tag = el.tagName.toUpperCase();
    if (SKIP.has(tag)) return;
    if (!visible(el)) { hidden.push(el); return; }
    if (tag === "BR") { emit("\n"); return; }
    if (tag === "A" && el.hasAttribute("href") && !el.getAttribute("href").startsWith("javascript:")) { link(el); return; }
    if (NATIVE.has(tag)) { control(el); return; }
    if (tag === "LABEL") {
      const box = el.querySelector("input[type=checkbox], input[type=radio]");
      if (box && visible(box)) { control(box); return; }  // its label is in the marker already
    }
    if (tag === "IMG" && !clickable(el, tag)) {
      const alt = clean(el.getAttribute("alt"));
      if (alt) emit(` [Image ${images++}: ${escapeText(alt)}] `);
      return;
    }
    const isItem = items && (tag === "LI" || tag === "TR" || tag === "DT" || ROLES.has(roleOf(el)));
    if (clickable(el, tag) || isItem) {
      const raw = (el.innerText || "").trim();
      const text = clean(raw);
      const single = text.length <= COLLAPSE_CHARS && !raw.includes("\n") && !LISTS.has(tag) && !LIST_ROLES.has(roleOf(el));
      if (!interactiveInside(el) && (single || !text)) {
        if (BLOCK.has(tag)) newline();
        if (tag === "LI") emit("* ");
        control(el);
        if (BLOCK.has(tag)) newline();
        return;
      }
      // (Only with a handler of its own: a pointer cursor alone is often just inherited styling of its parts.)
      if (!isItem && text && text.length <= CONTAINER_CHARS && !LISTS.has(tag) && !LIST_ROLES.has(roleOf(el))
        && (listens(el) || ROLES.has(roleOf(el)))) {
        // A clickable card with clickable parts (an inbox row with its star): the card gets a marker of its own.
        if (BLOCK.has(tag)) newline();
        const id = mark(el, { kind: "clickable", label: text });
        emit(`【${id}†${escapeMarker(short(raw.split("\n")[0].trim() || text))}】 `);
      }
    }
    const serves = LISTS.has(tag) || LIST_ROLES.has(roleOf(el)) ? listens(el) || items : items && !isItem;
    const block = BLOCK.has(tag);
    const separated = PARAGRAPH.has(tag);
    if (separated) paragraph(); else if (block) newline();
    if (/^H[1-6]$/.test(tag)) emit("#".repeat(Number(tag[1])) + " ");
    if (tag === "LI") emit("* ");
    if (tag === "TR") {
      const cells = Array.from(el.children).filter((c) => (c.tagName === "TD" || c.tagName === "TH") && visible(c));
      cells.forEach((cell, index) => {
        if (index) emit(" | ");
        cell.childNodes.forEach((child) => walk(child, false));
      });
      newline();
      return;
    }
    el.childNodes.forEach((child) => walk(child, serves));
    if (separated) paragraph(); else if (block) newline();
  };
  walk(document.body || document.documentElement, false);

  // Icon-only controls with the same made-up name side by side (two bare arrows) are told apart by position.
  const byParent = new Map();
  for (const [id, info] of Object.entries(controls)) {
    if (!/^\[.*\]$/.test(info.label || "")) continue;
    const el = document.querySelector(`[data-harmony-id="${id}"]`);
    const key = el && el.parentElement;
    if (!key) continue;
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push([id, info, el.getBoundingClientRect()]);
  }
  for (const group of byParent.values()) {
    const alike = group.filter((g) => g[1].label === group[0][1].label);
    if (alike.length !== 2 || alike.length !== group.length) continue;
    const [a, b] = alike.map((g) => g[2]);
    const vertical = Math.abs(a.top - b.top) >= Math.abs(a.left - b.left);
    const first = vertical ? (a.top <= b.top ? 0 : 1) : (a.left <= b.left ? 0 : 1);
    alike.forEach(([id, info], index) => {
      const where = vertical ? (index === first ? "top" : "bottom") : (index === first ? "left" : "right");
      const before = `【${id}†${escapeMarker(short(info.label))}`;
      const at = out.findIndex((piece) => piece.includes(before));
      if (at >= 0) out[at] = out[at].replace(before, `${before} (${where})`);
      info.position = where;
    });
  }
  // Whether a point of the element away from its centre is not covered (a click goes there; see actions.py).
  const partlyVisible = (el, r) => {
    const steps = [0.3, 0.7, 0.1, 0.9, 0.5];
    for (const fy of steps) for (const fx of steps) {
      const x = r.left + r.width * fx, y = r.top + r.height * fy;
      if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) continue;
      const hit = document.elementFromPoint(x, y);
      if (hit && (el.contains(hit) || hit.contains(el))) return true;
    }
    return false;
  };
  // An element on top of marked ones (a cover, a modal) is named first: it must be dealt with before them.
  const covers = new Map();
  for (const [id, info] of Object.entries(controls)) {
    const el = document.querySelector(`[data-harmony-id="${id}"]`);
    if (!el) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || r.bottom < 0 || r.right < 0 || r.top > innerHeight || r.left > innerWidth) continue;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || el.contains(hit) || hit.contains(el) || partlyVisible(el, r)) continue;
    const cover = hit.closest("[data-harmony-id]") || hit;
    const coverId = cover.getAttribute("data-harmony-id");
    if (coverId !== null && coverId === id) continue;
    if (coverId !== null) covers.set(coverId, (covers.get(coverId) || 0) + 1);
    info.coveredBy = coverId !== null ? Number(coverId) : null;
  }
  let head = "";
  for (const [coverId, count] of covers) {
    const info = controls[coverId] || links[coverId];
    if (count >= 1 && info) head += `On top of ${count} element(s) below: 【${coverId}†${escapeMarker(short(info.label || info.text || ""))}】\n`;
  }

  let html = null;
  if (wantHtml && Object.keys(controls).length === 0) {  // the rendered page less what is hidden, for reader mode
    hidden.forEach((el) => el.setAttribute("data-harmony-hidden", ""));
    const copy = document.documentElement.cloneNode(true);
    hidden.forEach((el) => el.removeAttribute("data-harmony-hidden"));
    copy.querySelectorAll("[data-harmony-hidden], script, style, template, noscript").forEach((el) => el.remove());
    html = copy.outerHTML;
  }
  return { title: document.title, url: location.href, text: (head ? head + "\n" : "") + out.join(""), links, controls,
    interactive: Object.keys(controls).length > 0, html };
}
