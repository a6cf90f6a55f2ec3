// bench_hf.mjs — the reference side of the tokenizer benchmark: Hugging Face
// tokenizers (npm tokenizers@0.23.2, Rust core via napi) on the same JSON-lines
// corpus as bench_tokenizer.c. Prints MB/s for (a) encode() line by line,
// awaited one at a time (what bench_tokenizer does, single-threaded): `mb_s`
// per wall second, `cpu_mb_s` per second of process CPU time (all threads);
// and (b) encodeBatch() over chunks of 1000 lines (Rayon threads):
// `batch_mb_s`. With --check it first compares the ids of every line with a
// file written by bench_tokenizer --ids-out and exits 1 on any difference
// (printing the first five).
//
//   TOKENIZERS_MODULE=/path/node_modules/tokenizers node bench_hf.mjs
//       --tokenizer T --corpus C [--check ids.txt] [--min-seconds 2] [--no-batch]
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require(process.env.TOKENIZERS_MODULE || 'tokenizers');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const tokPath = opt('--tokenizer'), corpus = opt('--corpus'), check = opt('--check');
const minSeconds = Number(opt('--min-seconds', '2'));
const noBatch = args.includes('--no-batch');

let t0 = performance.now();
const tok = Tokenizer.fromFile(tokPath);
const loadS = (performance.now() - t0) / 1e3;
const lines = fs.readFileSync(corpus, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const bytes = lines.reduce((a, l) => a + Buffer.byteLength(l), 0);

const enc = async (l) => (await tok.encode(l, null, { addSpecialTokens: false })).getIds();

if (check) {
  const want = fs.readFileSync(check, 'utf8').split('\n');
  let bad = 0;
  for (let i = 0; i < lines.length; i++) {
    const ids = (await enc(lines[i])).join(' ');
    if (ids !== want[i]) {
      if (bad < 5) console.error(`line ${i} ${JSON.stringify(lines[i])}\n  hf: ${ids}\n  c : ${want[i]}`);
      bad++;
    }
  }
  console.log(JSON.stringify({ check: corpus, lines: lines.length, mismatches: bad }));
  if (bad) process.exit(1);
}

let tokens = 0;
t0 = performance.now();
for (const l of lines) tokens += (await enc(l)).length;
const coldS = (performance.now() - t0) / 1e3;
let passes = 0, warmS = 0;
t0 = performance.now();
const c0 = process.cpuUsage();
do {
  for (const l of lines) await enc(l);
  passes++;
  warmS = (performance.now() - t0) / 1e3;
} while (warmS < minSeconds);
const cu = process.cpuUsage(c0);
const cpuS = (cu.user + cu.system) / 1e6; // all threads of the process
const out = { impl: 'hf-tokenizers-0.23.2-node', corpus, lines: lines.length, bytes, tokens,
  load_s: +loadS.toFixed(3), first_pass_mb_s: +(bytes / 1e6 / coldS).toFixed(2),
  mb_s: +((bytes * passes) / 1e6 / warmS).toFixed(2),
  cpu_mb_s: +((bytes * passes) / 1e6 / cpuS).toFixed(2), passes };
if (!noBatch) {
  let bpasses = 0, bS = 0;
  t0 = performance.now();
  do {
    for (let i = 0; i < lines.length; i += 1000)
      await tok.encodeBatch(lines.slice(i, i + 1000), { addSpecialTokens: false });
    bpasses++;
    bS = (performance.now() - t0) / 1e3;
  } while (bS < minSeconds);
  out.batch_mb_s = +((bytes * bpasses) / 1e6 / bS).toFixed(2);
}
console.log(JSON.stringify(out));
