// The login page: trades the link's credential (in the URL fragment, which
// browsers never send to a server or put in a Referer) for a session
// cookie. It signs in only when the user presses the button, so a link
// preview or prefetch cannot spend the link.
"use strict";
(() => {
  const button = document.getElementById("signin");
  const status = document.getElementById("login-status");
  const link = location.hash.slice(1);
  // Off the address bar and out of the history at once.
  history.replaceState(null, "", location.pathname + location.search);
  // Another link pasted into this tab changes only the fragment: start over.
  window.addEventListener("hashchange", () => location.reload());

  const fail = (msg) => {
    status.textContent = msg;
    status.className = "error";
    button.disabled = true;
    button.hidden = true;
  };
  if (!link) {
    fail("This page needs the whole link that `baicommit web` prints (the part after # is the sign-in). Run it again on a login node.");
    return;
  }
  button.disabled = false;
  button.focus();
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    status.className = "";
    status.textContent = "Signing in…";
    try {
      const r = await fetch("api/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ link }),
      });
      const data = await r.json().catch(() => null);
      if (!r.ok) {
        fail((data && data.error) || `Sign-in failed (${r.status} ${r.statusText}).`);
        return;
      }
      status.textContent = `Signed in as ${data.user}.`;
      location.replace("./");
    } catch (e) {
      button.removeAttribute("aria-busy");
      button.disabled = false;
      status.className = "error";
      status.textContent = `The manager cannot be reached: ${e.message}`;
    }
  });
})();
