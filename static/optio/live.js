/* Live dashboard: the Tasks list follows /ws/events, a task's page follows /ws/logs/<id>.
 *
 * Each socket resumes from the last seq it applied (`after`, and `eventsAfter` for a task's
 * envelopes), so a dropped connection reconnects without losing or repeating anything.
 * The session cookie authenticates; there is no build step and no dependency.
 */
(function () {
  "use strict";

  // Close codes after which reconnecting cannot help (see optio/consumers.py).
  var FINAL = { 4400: "bad request", 4401: "signed out — reload to sign in again", 4404: "task not found" };
  var MAX_LOG_LINES = 5000;

  function wsUrl(path, params) {
    var url = new URL(path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    Object.keys(params).forEach(function (k) { url.searchParams.set(k, String(params[k])); });
    return url.toString();
  }

  function status(text, title, ok) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.className = "live-status " + (ok ? "ok" : "muted");
    if (title) el.title = title;
  }

  /* Open a socket that reconnects with back-off; params() is read at every (re)connect. */
  function follow(path, params, onFrame) {
    var delay = 1000;
    function open() {
      var ws = new WebSocket(wsUrl(path, params()));
      ws.onopen = function () { status("● live", "Following live updates", true); };
      ws.onmessage = function (msg) {
        delay = 1000;
        try { onFrame(JSON.parse(msg.data)); } catch (err) { console.error("optio live:", err); }
      };
      ws.onclose = function (ev) {
        if (FINAL[ev.code]) { status("○ live updates stopped: " + FINAL[ev.code]); return; }
        status("○ reconnecting…", "Connection lost (code " + ev.code + "); retrying");
        setTimeout(open, ev.code === 4429 ? 30000 : delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    open();
  }

  function flash(el) {
    if (el && el.animate) el.animate([{ backgroundColor: "#fff3bf" }, { backgroundColor: "transparent" }], 1500);
  }

  function setState(badge, state) {
    badge.className = "state state-" + state;
    badge.textContent = state;
  }

  function money(value) {
    return value == null ? "—" : "$" + Number(value).toFixed(2);
  }

  /* The Tasks list: update rows in place; re-render the rows when a new task appears or a
     row no longer matches the state filter. */
  function tasksPage(container) {
    var after = Number(container.dataset.eventsAfter || 0);
    var refreshTimer = null;

    function refreshRows() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(function () {
        fetch(window.location.href, { headers: { "HX-Request": "true", "HX-Target": "task-rows" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) { container.innerHTML = html; })
          .catch(function (err) { console.warn("optio live: could not refresh rows", err); });
      }, 300);
    }

    follow("/ws/events", function () { return { after: after }; }, function (frame) {
      if (typeof frame.seq === "number" && frame.seq <= after) return;
      after = frame.seq;
      var data = frame.data || {};
      if (!data.taskId) return;
      var row = document.getElementById("task-" + data.taskId);
      var params = new URLSearchParams(window.location.search);
      if (!row) {
        var table = container.querySelector("table.list");
        var firstPage = !table || table.dataset.page === "1";
        if (frame.event === "task.created" && firstPage) refreshRows();
        return;
      }
      var badge = row.querySelector(".cell-state .state");
      if (badge && data.state) setState(badge, data.state);
      var cost = row.querySelector(".cell-cost");
      if (cost && data.costUsd != null) cost.textContent = money(data.costUsd);
      flash(row);
      if (params.get("state") && data.state && params.get("state") !== data.state) refreshRows();
    });
  }

  /* A task's page: append log lines, move the state, add history entries. */
  function taskPage(section) {
    var taskId = section.dataset.taskId;
    var logsEl = document.getElementById("task-logs");
    var historyEl = document.getElementById("task-history");
    var logAfter = 0;
    var eventsAfter = 0;
    var seen = {};
    logsEl.querySelectorAll("[data-seq]").forEach(function (el) { logAfter = Math.max(logAfter, Number(el.dataset.seq)); });
    historyEl.querySelectorAll("li[data-event-id]").forEach(function (li) {
      seen[li.dataset.eventId] = true;
      if (li.dataset.seq) eventsAfter = Math.max(eventsAfter, Number(li.dataset.seq));
    });

    function onEvent(frame) {
      eventsAfter = Math.max(eventsAfter, frame.seq);
      var data = frame.data || {};
      if (data.state) {
        var badge = document.getElementById("task-state");
        setState(badge, data.state);
        flash(badge);
        document.getElementById("task-reason").textContent = data.reason ? "(" + data.reason + ")" : "";
      }
      if (data.prUrl) {
        var pr = document.getElementById("task-pr");
        pr.textContent = "";
        var a = document.createElement("a");
        a.href = data.prUrl;
        a.textContent = data.prUrl;
        pr.appendChild(a);
      }
      if (data.costUsd != null) document.getElementById("task-cost").textContent = money(data.costUsd);
      if (seen[frame.id]) return;
      seen[frame.id] = true;
      var li = document.createElement("li");
      li.dataset.eventId = frame.id;
      li.dataset.seq = frame.seq;
      var time = document.createElement("time");
      time.textContent = frame.timestamp.replace("T", " ").replace(/\..*$|Z$/, "");
      var code = document.createElement("code");
      code.textContent = frame.event;
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(code);
      if (data.fromState) li.appendChild(document.createTextNode(" from " + data.fromState));
      historyEl.appendChild(li);
    }

    function onLine(frame) {
      if (frame.seq <= logAfter) return;
      logAfter = frame.seq;
      var empty = document.getElementById("no-logs");
      if (empty) empty.remove();
      var atBottom = logsEl.scrollHeight - logsEl.scrollTop - logsEl.clientHeight < 40;
      var span = document.createElement("span");
      span.className = "log log-" + frame.stream;
      span.dataset.seq = frame.seq;
      span.textContent = frame.content + "\n";
      logsEl.appendChild(span);
      while (logsEl.childNodes.length > MAX_LOG_LINES) logsEl.removeChild(logsEl.firstChild);
      if (atBottom) logsEl.scrollTop = logsEl.scrollHeight;
    }

    logsEl.scrollTop = logsEl.scrollHeight;
    follow("/ws/logs/" + taskId, function () { return { after: logAfter, eventsAfter: eventsAfter }; }, function (frame) {
      if ("event" in frame) onEvent(frame); else onLine(frame);
    });
  }

  function start() {
    var list = document.querySelector('[data-live="tasks"]');
    if (list) tasksPage(list);
    var task = document.querySelector('[data-live="task"]');
    if (task) taskPage(task);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
