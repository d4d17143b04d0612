// The login page: posts the name and password as JSON, then opens the right page for the role.
"use strict";

(function () {
  const S = window.Shouwang;

  function showProblem(pair) {
    const box = document.getElementById("login-problem");
    box.replaceChildren(S.bilingual(pair));
    box.hidden = false;
  }

  async function submit(event) {
    event.preventDefault();
    const button = document.getElementById("login-submit");
    button.disabled = true;
    try {
      const me = await S.fetchJSON("/api/login", {
        method: "POST",
        body: JSON.stringify({
          name: document.getElementById("name").value,
          password: document.getElementById("password").value,
        }),
      });
      const wantsStation = new URLSearchParams(location.search).get("next") === "station";
      location.assign(wantsStation || me.role === "fire_station" ? "/station" : "/");
    } catch (err) {
      if (err.status === 429) showProblem(["尝试次数过多，请稍后再试", "Too many attempts; try again later"]);
      else if (err.status === 401) showProblem(["用户名或密码错误", "Wrong name or password"]);
      else showProblem(["登录失败：" + err.message, "Could not log in: " + err.message]);
    } finally {
      button.disabled = false;
    }
  }

  function start() {
    document.getElementById("login-form").addEventListener("submit", submit);
    const lang = document.getElementById("lang-switch");
    lang.textContent = S.lang() === "en" ? "中文" : "English";
    lang.addEventListener("click", () => {
      S.setLang(S.lang() === "en" ? "zh" : "en");
      lang.textContent = S.lang() === "en" ? "中文" : "English";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
