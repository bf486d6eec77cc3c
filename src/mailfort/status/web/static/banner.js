/* mailfort status banner: <script src="https://status.example/banner.js" async></script>
 * Fetches banner.json from the same place the script came from and, while an incident or a
 * maintenance is open, puts a red notice at the top of the page; nothing otherwise.
 * Text is set with textContent, never parsed as HTML. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script && script.src ? script.src.replace(/banner\.js(\?.*)?$/, "") : "/";
  var lang = (script && script.getAttribute("data-lang")) || "";
  var url = base + "banner.json" + (lang ? "?lang=" + encodeURIComponent(lang) : "");
  function show(data) {
    if (!data || !data.active) { return; }
    var old = document.getElementById("mailfort-status-banner");
    if (old) { old.parentNode.removeChild(old); }
    var box = document.createElement("div");
    box.id = "mailfort-status-banner";
    box.setAttribute("role", "alert");
    box.style.cssText = "background:#b42318;color:#fff;padding:12px 16px;" +
      "font:600 16px/1.4 system-ui,sans-serif;text-align:center;" +
      "border-bottom:3px solid #5c0a04;position:relative;z-index:2147483647";
    var title = document.createElement("strong");
    title.textContent = data.title;
    box.appendChild(title);
    if (data.text) { box.appendChild(document.createTextNode(" \u2013 " + data.text + " ")); }
    if (data.url) {
      var link = document.createElement("a");
      // Links may be relative to the status server (no public_url configured): resolve them
      // against banner.json's address, not against the page that embeds the banner.
      link.href = new URL(data.url, new URL(url, document.baseURI)).href;
      link.textContent = "\u2192";
      link.setAttribute("aria-label", data.title);
      link.style.cssText = "color:#fff;text-decoration:underline;margin-left:8px";
      box.appendChild(link);
    }
    document.body.insertBefore(box, document.body.firstChild);
  }
  function load() {
    fetch(url, { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(show)
      .catch(function () { /* the status page being unreachable must not break the host page */ });
  }
  if (document.body) { load(); } else { document.addEventListener("DOMContentLoaded", load); }
})();
