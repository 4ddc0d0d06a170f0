// The gateway's JSON API: every request carries `Authorization: token T` (T from
// sessionStorage); an error answer becomes an ApiError with its message and machine code.
const KEY = "vwed.console.token";

export const token = () => sessionStorage.getItem(KEY) || "";
export const setToken = (value) => sessionStorage.setItem(KEY, value);
export const clearToken = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
  toString() {
    return `${this.message} (${this.code})`;
  }
}

function headers(extra) {
  return { Authorization: `token ${token()}`, ...extra };
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const code = (body && body.code) || `HTTP_${response.status}`;
  const message = (body && body.error) || response.statusText || "request failed";
  return new ApiError(response.status, code, message, body);
}

// JSON in, JSON out. opts: method, body (an object, sent as JSON), headers.
export async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: headers(opts.headers), cache: "no-store" };
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "NETWORK_ERROR", `the gateway does not answer (${err.message})`);
  }
  if (!response.ok) throw await failure(response);
  const data = await response.json();
  data.__headers = response.headers;
  return data;
}

// A download (e.g. the log export): fetched with the header, saved as a blob.
export async function download(path, fallbackName) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = match ? match[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Query string from an object, skipping empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// The path of a script file in a URL: each segment encoded, the slashes kept.
export const filePath = (path) => path.split("/").map(encodeURIComponent).join("/");

export function socketUrl(path, params) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}${query({ ...params, token: token() })}`;
}
