/* Cairn tracking snippet loader (docs/snippet.md), served as /snippet.js and /enter-track.js.
 * Keeps the page's EnterCRM object (seed 003's snippet sets EnterCRM.apiKey), queues calls made
 * before the tracker is ready, then loads the tracker (a module with its WebAssembly core) from
 * the same server. Never throws into the page. */
(function (w) {
  try {
    var E = (w.EnterCRM = w.EnterCRM || {});
    if (E.__cairn) return;
    E.__cairn = 1;
    var q = (E.q = E.q || []);
    'identify track page reset optIn optOut flush'.split(' ').forEach(function (m) {
      if (!E[m]) E[m] = function () { q.push([m, [].slice.call(arguments)]); };
    });
    var s = document.currentScript, base = E.apiHost || (s && s.src ? new URL(s.src).origin : '');
    import(base + '/snippet/__CORE_JS__').then(function (m) {
      return m.start(w, base, base + '/snippet/__CORE_WASM__');
    }).catch(function () {});
  } catch (e) {}
})(window);
