// What the panes share: who is signed in, the selected script, the running scripts, the
// file list. Changes are announced as events on `bus` ("select", "running", "tree", "goto").
export const bus = new EventTarget();

export const state = {
  whoami: null, // {role, version, jupyter_url}
  selected: null, // the selected script path
  running: new Map(), // script_path -> summary from /script-engine/running
  files: [], // every script file path of the tree
};

export function emit(name, detail) {
  bus.dispatchEvent(new CustomEvent(name, { detail }));
}

export function on(name, handler) {
  bus.addEventListener(name, (event) => handler(event.detail));
}
