// Installed in every frame before the page's own scripts (a context init script).
// It lets the snapshot see what a person sees but the DOM does not say:
// - which elements got click-like listeners from JavaScript (addEventListener,
//   which jQuery and d3 use too), kept in a WeakSet so pages cannot read it;
// - how many short timers are pending (debounced widgets answer after a delay);
// - when the DOM last changed (ignoring the snapshot's own data-harmony-* marks).
// The tool waits on the last two after an action, so a view shows the settled page.
// It also offers a wait for the document's load (all of the load event's listeners run), made with the
// functions the page found, so the tool can wait for the load and read the page in one round trip.
(() => {
  if (window.__harmonyHooks) return;
  const CLICKS = new Set(["click", "mousedown", "mouseup", "pointerdown", "pointerup", "dblclick", "touchstart"]);
  const SHORT_TIMER_MS = 1000;
  const state = { clicky: new WeakSet(), pending: 0, changed: performance.now() };
  Object.defineProperty(window, "__harmonyHooks", { value: state, enumerable: false });

  const add = EventTarget.prototype.addEventListener;
  const setT = window.setTimeout, clearT = window.clearTimeout;
  // afterLoad(read): a promise of read()'s value, taken once the document has loaded. The page's own load
  // listeners run after this one (it is the first), so it waits for the pageshow event that follows the load
  // event at once, in the same task (a task later would wait for a paint). It uses only what it took before the
  // page's scripts ran, and the value comes boxed in an object without a prototype, so that no `then` a page
  // defines on Promise or Object can stand in for the tool's reading of the page.
  const NativePromise = Promise;
  let loaded = false;
  let onLoad = null;
  add.call(window, "pageshow", () => { loaded = true; const go = onLoad; onLoad = null; if (go) go(); }, { once: true });
  const afterLoad = (read) => new NativePromise((resolve, reject) => {
    const go = () => { try { resolve({ __proto__: null, value: read() }); } catch (error) { reject(error); } };
    if (loaded) go(); else { const before = onLoad; onLoad = before ? () => { before(); go(); } : go; }
  });
  Object.defineProperty(state, "afterLoad", { value: afterLoad, enumerable: false });
  const wrappedAdd = function (type, listener, options) {
    if (CLICKS.has(type) && this instanceof Element) state.clicky.add(this);
    return add.call(this, type, listener, options);
  };
  Object.defineProperty(EventTarget.prototype, "addEventListener", { value: wrappedAdd, writable: true, configurable: true });

  const live = new Set();
  window.setTimeout = function (handler, delay, ...rest) {
    const ms = Number(delay) || 0;
    if (ms > SHORT_TIMER_MS || typeof handler !== "function") return setT.call(window, handler, delay, ...rest);
    let id;
    id = setT.call(window, function () {
      if (live.delete(id)) state.pending--;
      return handler.apply(this, arguments);
    }, delay, ...rest);
    live.add(id);
    state.pending++;
    return id;
  };
  window.clearTimeout = function (id) {
    if (live.delete(id)) state.pending--;
    return clearT.call(window, id);
  };

  const observer = new MutationObserver((records) => {
    if (records.some((r) => r.type !== "attributes" || !String(r.attributeName).startsWith("data-harmony"))) {
      state.changed = performance.now();
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  // Typing and focus change the live page without any mutation.
  for (const type of ["input", "change", "focusin"]) add.call(document, type, () => { state.changed = performance.now(); }, true);
})();
