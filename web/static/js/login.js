// The login form. Resolves once the API gave a token (kept in sessionStorage: closing the tab logs out).

import { ApiError } from "./api.js";

export function askLogin(api) {
  const overlay = document.querySelector("[data-testid=login]");
  const form = document.querySelector("[data-testid=login-form]");
  const error = document.querySelector("[data-testid=login-error]");
  const button = document.querySelector("[data-testid=login-submit]");
  overlay.hidden = false;
  error.textContent = "";
  form.elements.name.focus();
  return new Promise((resolve) => {
    form.onsubmit = async (event) => {
      event.preventDefault();
      button.disabled = true;
      error.textContent = "";
      try {
        const user = await api.login(form.elements.name.value.trim(), form.elements.password.value);
        form.elements.password.value = "";
        overlay.hidden = true;
        form.onsubmit = null;
        resolve(user);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) error.textContent = "用户名或密码错误 (wrong name or password)";
        else if (e instanceof ApiError && e.status === 429) error.textContent = "尝试次数过多，请稍后再试 (too many tries)";
        else if (e instanceof ApiError) error.textContent = `登录失败：${e.message}`;
        else error.textContent = "无法连接服务器 (server unreachable)";
      } finally {
        button.disabled = false;
      }
    };
  });
}
