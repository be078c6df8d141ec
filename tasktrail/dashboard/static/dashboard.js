// tasktrail dashboard: refresh the page's content in place, and say when the server or
// its database cannot be reached. Pages work without it; it only keeps them current.
(function () {
  "use strict";
  // a form with data-confirm asks first (a filtered cancel)
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
  var seconds = parseFloat(document.body.dataset.refresh || "0");
  var content = document.getElementById("content");
  var banner = document.getElementById("banner");
  if (!content || !(seconds > 0)) return;

  function show(message) {
    banner.textContent = message;
    banner.hidden = !message;
  }

  function busy() {
    // never replace a form the user is filling in
    var active = document.activeElement;
    return active && content.contains(active) && /INPUT|SELECT|TEXTAREA|BUTTON/.test(active.tagName);
  }

  function refresh() {
    if (document.hidden || busy()) return schedule();
    fetch(window.location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
      .then(function (response) {
        return response.text().then(function (html) {
          if (response.status === 503) {
            show("The database is unreachable; retrying every " + seconds + " s.");
            return;
          }
          show("");
          if (response.ok) content.innerHTML = html;
        });
      })
      .catch(function () {
        show("The dashboard server is unreachable; retrying every " + seconds + " s.");
      })
      .then(schedule);
  }

  function schedule() {
    window.setTimeout(refresh, seconds * 1000);
  }

  if (document.querySelector("main h1") && /^503$/.test(document.querySelector("main h1").textContent)) {
    show("The database is unreachable; retrying every " + seconds + " s.");
  }
  schedule();
})();
