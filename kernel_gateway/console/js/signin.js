// Sign in with a token: whoami says admin or caller; a caller token is refused.
import { api, clearToken, setToken, token } from "./api.js";
import { $ } from "./ui.js";

const CALLER_REFUSED =
  "This is a caller token: it may call scripts (task flows) but not manage the gateway. " +
  "Sign in with the admin token.";

async function whoami() {
  try {
    return await api("/script-engine/whoami");
  } catch (err) {
    if (err.code === "FORBIDDEN") return { role: "caller" };
    if (err.code !== "ENDPOINT_NOT_FOUND") throw err;
  }
  // a gateway older than whoami: an admin-only endpoint tells the role
  try {
    await api("/script-engine/running");
    return { role: "admin", version: null, jupyter_url: null };
  } catch (err) {
    if (err.code === "FORBIDDEN") return { role: "caller" };
    throw err;
  }
}

// Resolves with whoami once an admin token is accepted.
export function setupSignin(onSignedIn) {
  const form = $("signin-form");
  const error = $("signin-error");
  let busy = false;
  const attempt = async (value, quiet) => {
    if (busy) return; // one attempt at a time (a double click, Enter twice)
    busy = true;
    setToken(value);
    try {
      const me = await whoami();
      if (me.role !== "admin") {
        clearToken();
        error.textContent = CALLER_REFUSED;
        return;
      }
      error.textContent = "";
      onSignedIn(me);
    } catch (err) {
      clearToken();
      if (!quiet) {
        error.textContent =
          err.code === "UNAUTHORIZED" ? "This token is not valid for this gateway." : `${err.message} (${err.code})`;
      }
    } finally {
      busy = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt($("signin-token").value.trim(), false);
  });
  $("signout").addEventListener("click", () => {
    clearToken();
    location.reload();
  });
  if (token()) attempt(token(), true); // a reload of the tab keeps the session
}
