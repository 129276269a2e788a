// What the live map and the replay page do alike around their map: a passing notice, the logout button,
// and a banner when the page cannot start.

const $ = (testid) => document.querySelector(`[data-testid=${testid}]`);

export function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = !text;
  clearTimeout(notice.timer);
  if (text) notice.timer = setTimeout(() => (box.hidden = true), 6000);
}

// Logging out revokes the token on the server, then the page asks for a login again.
export function onLogout(api, loginOpen, endSession) {
  $("logout").addEventListener("click", async () => {
    if (loginOpen()) return;
    await api.logout().catch((e) => console.warn("logout", e));
    endSession();
  });
}

export function start(boot) {
  boot().catch((e) => {
    console.error(e);
    const box = $("notice");
    box.textContent = `地图无法启动 (map failed to start): ${e.message}`;
    box.hidden = false;
  });
}
