// The one entry point of the vendored editor bundle: what the console's editor.js imports.
export { EditorView, basicSetup } from "codemirror";
export { EditorState, Compartment } from "@codemirror/state";
export { keymap } from "@codemirror/view";
export { undo, redo } from "@codemirror/commands";
export { python } from "@codemirror/lang-python";
export { linter, lintGutter, setDiagnostics, forceLinting } from "@codemirror/lint";
