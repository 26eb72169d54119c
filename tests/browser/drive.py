#!/usr/bin/env python3
"""Drives headless chromium through the dashboard, over the DevTools
protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL on
fds 3 and 4; the standard library is enough). Used by tests/dashboard.rs.

    drive.py CHROMIUM URL TOKEN SCREENSHOT DATABASE...

Checks, in order: the page's accessibility (every control labelled, text
contrast at least 4.5:1, a language, keyboard focus reaching the sign-in
form by Tab); sign-in with a wrong token refused; sign-in; a card per
DATABASE; "Back up now" on the first database until its task succeeds;
the restore points listed; a screenshot of the page. Prints one JSON line
and exits 0, or prints why and exits 1.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="lv-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Out of the way first (either may already be 3 or 4), then in
            # place, inheritable (a pipe's descriptors close on exec).
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3, inheritable=True)
            os.dup2(b, 4, inheritable=True)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-dev-shm-usage", "--remote-debugging-pipe",
             "--window-size=1280,1000", "--user-data-dir=" + self.profile, "about:blank"],
            preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.buf = b""
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.time() + 60
        while time.time() < deadline:
            while b"\0" not in self.buf:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(method + ": " + json.dumps(reply["error"]))
                return reply.get("result", {})
        raise RuntimeError(method + ": no answer")

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", {"url": url})

    def js(self, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                           "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("script failed: " + json.dumps(r["exceptionDetails"])[:500])
        return r["result"].get("value")

    def wait(self, expression, what, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if self.js(expression):
                    return
            except RuntimeError:
                pass
            time.sleep(0.2)
        raise RuntimeError("waited " + str(limit) + " s for " + what)

    def key(self, key, code, vk):
        # Enter must carry its text to submit a form, as a real key does.
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk}
        if key == "Enter":
            down["text"] = "\r"
        else:
            down["type"] = "rawKeyDown"
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                             "windowsVirtualKeyCode": vk})

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Every visible control labelled; every text's contrast with the colour
# behind it at least 4.5:1 (WCAG AA); the page's language set.
ACCESSIBILITY = r"""
(() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  const visible = (e) => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  for (const c of document.querySelectorAll("input, select, textarea, button")) {
    if (!visible(c)) continue;
    const name = (c.labels && c.labels.length) || c.getAttribute("aria-label") ||
      (c.tagName === "BUTTON" && c.textContent.trim());
    if (!name) problems.push("unlabelled " + c.tagName.toLowerCase() + (c.id ? "#" + c.id : ""));
  }
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = (e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c;
    }
    return [255, 255, 255];
  };
  for (const e of document.querySelectorAll("body *")) {
    if (!visible(e)) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const fg = rgb(getComputedStyle(e).color), bg = behind(e);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) problems.push("contrast " + ratio.toFixed(2) + " on <" + e.tagName.toLowerCase() + "> " + e.textContent.trim().slice(0, 30));
  }
  return problems;
})()
"""


def main():
    chromium, url, token, shot, *databases = sys.argv[1:]
    b = Browser(chromium)
    report = {}
    try:
        b.open(url)
        b.wait("document.readyState === 'complete' && !!document.querySelector('#token')", "the page")
        problems = b.js(ACCESSIBILITY)
        if problems:
            raise RuntimeError("accessibility: " + "; ".join(problems))
        # The keyboard: the token field has the focus at once; Tab goes on
        # to the sign-in button, and round the page back to the field.
        focused = lambda: b.js("document.activeElement.id || document.activeElement.tagName")
        order = [focused()]
        for _ in range(3):
            b.key("Tab", "Tab", 9)
            order.append(focused())
        if order[0] != "token" or order[1] != "signin" or "token" not in order[2:]:
            raise RuntimeError("keyboard focus order: " + " > ".join(order))
        report["focus_order"] = order
        # A wrong token is refused, on the page.
        b.js("document.querySelector('#token').focus(); true")
        b.send("Input.insertText", {"text": "wrong-token-000000000000"})
        b.key("Enter", "Enter", 13)
        b.wait("document.querySelector('#login-error').textContent.length > 0", "the refusal")
        report["refused"] = b.js("document.querySelector('#login-error').textContent")
        # Signed in with the keyboard.
        b.js("const t = document.querySelector('#token'); t.value = ''; t.focus(); true")
        b.send("Input.insertText", {"text": token})
        b.key("Enter", "Enter", 13)
        for db in databases:
            b.wait("!!document.querySelector('[data-database=%s] .last')" % json.dumps(db), "the card of " + db)
        report["cards"] = b.js("[...document.querySelectorAll('[data-database]')].map(c => c.dataset.database)")
        problems = b.js(ACCESSIBILITY)
        if problems:
            raise RuntimeError("accessibility after sign-in: " + "; ".join(problems))
        first = json.dumps(databases[0])
        b.js("document.querySelector('[data-database=%s] .backup').click(); true" % first)
        b.wait("/succeeded/.test(document.querySelector('[data-database=%s] .task').textContent)" % first,
               "the backup to succeed", limit=120)
        report["task"] = b.js("document.querySelector('[data-database=%s] .task').textContent" % first)
        b.wait("/success/.test(document.querySelector('[data-database=%s] .last').textContent)" % first,
               "the backup shown as the last one")
        report["last"] = b.js("document.querySelector('[data-database=%s] .last').textContent" % first)
        b.js("document.querySelector('[data-database=%s] .points').click(); true" % first)
        b.wait("document.querySelectorAll('[data-database=%s] .snapshot option').length > 0" % first,
               "the restore points")
        report["points"] = b.js("document.querySelectorAll('[data-database=%s] .snapshot option').length" % first)
        b.wait("!!document.querySelector('#growth svg')", "the growth chart")
        png = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
        report["ok"] = True
        print(json.dumps(report))
        return 0
    except Exception as e:  # one line saying what failed, with what got done
        report["error"] = str(e)
        print(json.dumps(report))
        return 1
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
