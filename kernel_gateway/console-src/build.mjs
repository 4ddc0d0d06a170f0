// Builds ../console/vendor/ from the exact versions in package-lock.json:
//   codemirror.js  CodeMirror 6 (basic setup, Python, lint) bundled and minified as one ES module
//   uPlot.esm.js, uPlot.min.css  copied from the uplot package as published
// Run: npm ci && npm run build   (the output is committed; nothing is built at install)
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";

const out = new URL("../console/vendor/", import.meta.url);
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ["entry.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  legalComments: "eof",
  outfile: new URL("codemirror.js", out).pathname,
});

for (const name of ["uPlot.esm.js", "uPlot.min.css"]) {
  copyFileSync(`node_modules/uplot/dist/${name}`, new URL(name, out).pathname);
}
copyFileSync("node_modules/uplot/LICENSE", new URL("uPlot.LICENSE", out).pathname);
copyFileSync("node_modules/codemirror/LICENSE", new URL("codemirror.LICENSE", out).pathname);

const versions = ["codemirror", "@codemirror/lang-python", "@codemirror/lint", "uplot"]
  .map((p) => `${p} ${JSON.parse(readFileSync(`node_modules/${p}/package.json`)).version}`);
console.log("built vendor/ from", versions.join(", "));
