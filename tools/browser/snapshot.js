// Turns the rendered DOM into text for a text-only model: links and controls become
// numbered markers, and every marked element gets a data-harmony-id attribute so an
// action can find it again. Runs inside the page via Playwright's evaluate().
() => {
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "HEAD", "SVG", "CANVAS", "IFRAME", "OBJECT"]);
  const BLOCK = new Set(["ADDRESS", "ARTICLE", "ASIDE", "BLOCKQUOTE", "BODY", "DD", "DETAILS", "DIV", "DL", "DT",
    "FIELDSET", "FIGCAPTION", "FIGURE", "FOOTER", "FORM", "H1", "H2", "H3", "H4", "H5", "H6", "HEADER", "HR", "LI",
    "MAIN", "NAV", "OL", "P", "PRE", "SECTION", "SUMMARY", "TABLE", "TBODY", "THEAD", "TFOOT", "TR", "UL", "CAPTION"]);
  const PARAGRAPH = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "TABLE", "UL", "OL", "PRE", "BLOCKQUOTE", "FORM",
    "SECTION", "ARTICLE", "HEADER", "FOOTER", "NAV", "MAIN", "FIGURE", "DL"]);
  const TEXT_INPUTS = new Set(["text", "search", "email", "password", "number", "url", "tel", "date", "time",
    "datetime-local", "month", "week", "color", "range", ""]);
  const pageHost = location.host;
  const out = [];
  const links = {};
  const controls = {};
  const urlIds = new Map();
  let nextId = 0;
  let images = 0;
  document.querySelectorAll("[data-harmony-id]").forEach((el) => el.removeAttribute("data-harmony-id"));

  const clean = (s) => (s || "").replace(/\s+/g, " ").trim();
  const escapeText = (s) => s.replace(/【/g, "〖").replace(/】/g, "〗");
  const escapeMarker = (s) => escapeText(s).replace(/†/g, "‡");
  const visible = (el) => {
    if (el.checkVisibility) return el.checkVisibility({ checkVisibilityCSS: true });
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden";
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

  const control = (el) => {
    const tag = el.tagName;
    const type = (el.getAttribute("type") || "").toLowerCase();
    if (tag === "INPUT" && type === "hidden") return;
    if ((tag === "INPUT" && ["submit", "button", "reset", "image"].includes(type)) || tag === "BUTTON") {
      const text = clean(el.innerText || el.value || el.getAttribute("aria-label") || el.getAttribute("alt") || type || "button");
      const id = mark(el, { kind: "button", label: text, disabled: el.disabled });
      emit(` 【${id}†button: ${escapeMarker(text)}${el.disabled ? " (disabled)" : ""}】 `);
    } else if (tag === "INPUT" && (type === "checkbox" || type === "radio")) {
      const label = labelOf(el);
      const id = mark(el, { kind: type, label, checked: el.checked });
      const box = type === "checkbox" ? (el.checked ? "[x]" : "[ ]") : (el.checked ? "(*)" : "( )");
      emit(` 【${id}†${type} ${box} ${escapeMarker(label)}】 `);
    } else if (tag === "SELECT") {
      const label = labelOf(el);
      const options = Array.from(el.options).map((o) => clean(o.label || o.text));
      const chosen = el.selectedIndex >= 0 ? options[el.selectedIndex] : "";
      const id = mark(el, { kind: "select", label, value: chosen, options });
      emit(` 【${id}†select "${escapeMarker(label)}" = ${escapeMarker(chosen)}; options: ${escapeMarker(options.join(" | "))}】 `);
    } else if (tag === "TEXTAREA" || (tag === "INPUT" && TEXT_INPUTS.has(type))) {
      const label = labelOf(el);
      const shown = type === "password" ? "•".repeat(el.value.length) : el.value;
      const id = mark(el, { kind: "textbox", label, value: shown, type: type || "text" });
      const hint = !shown && el.getAttribute("placeholder") ? ` (placeholder: ${clean(el.getAttribute("placeholder"))})` : "";
      emit(` 【${id}†${type && type !== "text" ? type + " " : ""}input "${escapeMarker(label)}" = "${escapeMarker(shown)}"${escapeMarker(hint)}】 `);
    } else {
      const id = mark(el, { kind: "control", label: clean(el.innerText) });
      emit(` 【${id}†${escapeMarker(clean(el.innerText) || tag.toLowerCase())}】 `);
    }
  };

  const link = (el) => {
    const url = el.href;
    const text = clean(el.innerText) || clean(el.getAttribute("aria-label") || el.getAttribute("title") || "") || url;
    let id = urlIds.get(url);
    if (id === undefined) {
      id = nextId++;
      urlIds.set(url, id);
      links[id] = { url, text };
    }
    el.setAttribute("data-harmony-id", String(id));
    let host = "";
    try { host = new URL(url).host; } catch (e) { host = ""; }
    const domain = host && host !== pageHost ? `†${escapeMarker(host)}` : "";
    emit(`【${id}†${escapeMarker(text)}${domain}】`);
  };

  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.replace(/\s+/g, " ");
      if (text.trim()) emit(escapeText(text));
      else if (text && !/[\s]$/.test(last())) emit(" ");
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const el = node;
    const tag = el.tagName.toUpperCase();
    if (SKIP.has(tag) || !visible(el)) return;
    if (tag === "BR") { emit("\n"); return; }
    if (tag === "IMG") {
      const alt = clean(el.getAttribute("alt"));
      if (alt) emit(` [Image ${images++}: ${escapeText(alt)}] `);
      return;
    }
    if (tag === "A" && el.hasAttribute("href") && !el.getAttribute("href").startsWith("javascript:")) { link(el); return; }
    if (["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(tag)) { control(el); return; }
    if (tag === "LABEL") {
      const box = el.querySelector("input[type=checkbox], input[type=radio]");
      if (box && visible(box)) { control(box); return; }  // its label is in the marker already
    }
    const role = el.getAttribute("role");
    if (role && ["button", "checkbox", "tab", "menuitem", "switch", "option"].includes(role) || (el.hasAttribute("onclick") && tag !== "BODY")) {
      control(el);
      return;
    }
    const block = BLOCK.has(tag);
    const separated = PARAGRAPH.has(tag);
    if (separated) paragraph(); else if (block) newline();
    if (/^H[1-6]$/.test(tag)) emit("#".repeat(Number(tag[1])) + " ");
    if (tag === "LI") emit("* ");
    if (tag === "TR") {
      const cells = Array.from(el.children).filter((c) => (c.tagName === "TD" || c.tagName === "TH") && visible(c));
      cells.forEach((cell, index) => {
        if (index) emit(" | ");
        cell.childNodes.forEach(walk);
      });
      newline();
      return;
    }
    el.childNodes.forEach(walk);
    if (separated) paragraph(); else if (block) newline();
  };
  walk(document.body || document.documentElement);
  const hasForms = Object.values(controls).some((c) => c.kind !== "control");
  return { title: document.title, url: location.href, text: out.join(""), links, controls, hasForms };
}
