// make_corpus.mjs — writes the tokenizer benchmark corpora as JSON lines (one
// JSON string per line) into OUTDIR:
//   fixture.jsonl    the 154 lines of tests/fixtures/tokenizer_qwen.safetensors
//                    repeated to about 5 MB;
//   synthetic.jsonl  about 5 MB of generated pathology text (reports,
//                    <think>/<answer> chains, numbers, units) plus pathology
//                    cases for the splitter: long runs of spaces, letters with
//                    no space, digits, punctuation, newlines, CJK, emoji,
//                    combining marks;
//   fuzz.jsonl       20000 short random strings over the characters where the
//                    Qwen2 regex is delicate (not timed: used to compare ids).
// Deterministic (fixed seeds). Usage: node make_corpus.mjs FIXTURE OUTDIR
import fs from 'node:fs';
import path from 'node:path';

const [fixture, outdir] = process.argv.slice(2);
if (!fixture || !outdir) {
  console.error('usage: node make_corpus.mjs tokenizer_qwen.safetensors OUTDIR');
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });

function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const buf = fs.readFileSync(fixture);
const hlen = Number(buf.readBigUInt64LE(0));
const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
const lines = JSON.parse(header.__metadata__.lines);

function write(name, arr) {
  fs.writeFileSync(path.join(outdir, name), arr.map((s) => JSON.stringify(s)).join('\n') + '\n');
}
const TARGET = 5_000_000;

const fix = [];
for (let size = 0; size < TARGET;) for (const l of lines) { fix.push(l); size += Buffer.byteLength(l); }
write('fixture.jsonl', fix);

const rnd = mulberry32(1234);
const pick = (a) => a[Math.floor(rnd() * a.length)];
const subjects = ['The glandular epithelium', 'A dense lymphocytic infiltrate', 'The tumour nest',
  'Scattered plasma cells', 'The ductal lining', 'Several mitotic figures', 'The lamina propria',
  'Atypical glands', 'The necrotic core', 'Foamy macrophages', 'The basal layer', 'Signet-ring cells'];
const verbs = ['shows', 'contains', 'displays', 'is infiltrated by', 'exhibits', 'lacks', 'surrounds'];
const objs = ['nuclear pleomorphism', 'a cribriform architecture', 'prominent nucleoli',
  'comedo-type necrosis', 'psammoma bodies', 'marked hyperchromasia', "the tumour's front",
  'loss of polarity', 'abundant extracellular mucin', 'perineural invasion'];
const places = ['in the upper-left quadrant', 'near the resection margin', 'at the invasive front',
  'beneath the surface epithelium', "at 2 o'clock", 'around the central lumen'];
function sentence() {
  let s = `${pick(subjects)} ${pick(verbs)} ${pick(objs)} ${pick(places)}`;
  const r = rnd();
  if (r < 0.2) s += ` (Ki-67 ${Math.floor(rnd() * 100)}%; ${pick(['5x', '10x', '20x', '40x'])}, ${(rnd() * 2).toFixed(3)} µm/px)`;
  else if (r < 0.3) s += ` <SEG>`;
  return s + pick(['.', '.', ';', '!', '?']);
}
function chain() {
  const x0 = Math.floor(rnd() * 400), y0 = Math.floor(rnd() * 400);
  return `<think>${sentence()} ${sentence()}</think>\n<answer>{"bbox": [${x0}, ${y0}, ${x0 + 64}, ${y0 + 80}], "points": [[${x0 + 32}, ${y0 + 40}]]}</answer>`;
}
const cjk = '组织病理学图像中腺体结构紊乱请分割肿瘤区域病理医生说这是中分化腺癌日本語腫瘍細胞が密に増殖している';
const syn = [];
let size = 0;
const push = (s) => { syn.push(s); size += Buffer.byteLength(s); };
// Pathology cases for the splitter, a few of each.
for (let k = 0; k < 4; k++) {
  push(' '.repeat(20000) + 'x');
  push('a'.repeat(5000));
  push(Array.from({ length: 5000 }, () => pick('abcdefghijklmnopqrstuvwxyz')).join(''));
  push('1234567890'.repeat(1000));
  push('!?.,;:-'.repeat(1000));
  push('\n \n\t\r\n  '.repeat(1000));
  push(Array.from({ length: 2000 }, () => pick([...cjk])).join(''));
  push('🔬🧫🧬👩‍🔬'.repeat(500));
  push('cafe\u0301 nai\u0308ve '.repeat(500));
  push("it's DON'T we'll you've I'M ".repeat(500));
}
while (size < TARGET) {
  const r = rnd();
  if (r < 0.5) push(Array.from({ length: 1 + Math.floor(rnd() * 4) }, sentence).join(' '));
  else if (r < 0.8) push(chain());
  else if (r < 0.9) push(`Q: Which region ${pick(verbs)} ${pick(objs)}? A: The ${pick(objs)} ${pick(places)} [SEG].`);
  else push(`<|im_start|>user\n${sentence()}<|im_end|>\n<|im_start|>assistant\n${chain()}<|im_end|>`);
}
write('synthetic.jsonl', syn);

const frnd = mulberry32(99);
const pool = ["'", "'", 's', 'S', 'ſ', 't', 'T', 'r', 'e', 'E', 'v', 'm', 'l', 'L', 'd', 'D', 'k', 'K',
  'a', 'Z', ' ', ' ', ' ', '\t', '\n', '\r', '\u000b', '\u000c', '\u0085', '\u00a0', '\u1680',
  '\u2000', '\u200a', '\u200b', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff',
  '\u180e', '\u001c', '0', '7', '²', '½', 'Ⅻ', '٣', 'é', 'e\u0301', 'A\u030a', 'Å', 'ﬁ', '中',
  '文', 'ー', 'ｱ', '한', '\u1100\u1161', 'α', 'ß', 'İ', 'ǅ', 'ʰ', '\u0301', '\u0308', '\u20dd',
  '.', ',', '!', '?', '-', '_', '(', ')', '"', '<', '>', '|', '/', '\\', '#', '$', '%', '&',
  '€', '©', '™', '→', '😀', '👩\u200d🔬', '🇩🇪', '\u200d', '\ue000', '\u{10ffff}',
  '<|im_start|>', '<|endoftext|>', '<think>', '</think>', '<|im_end|>', '<tool_call>'];
const fuzz = [];
for (let i = 0; i < 20000; i++) {
  const n = 1 + Math.floor(frnd() * 24);
  let s = '';
  for (let k = 0; k < n; k++) s += pool[Math.floor(frnd() * pool.length)];
  fuzz.push(s);
}
write('fuzz.jsonl', fuzz);
console.log(`wrote ${fix.length} + ${syn.length} + ${fuzz.length} lines to ${outdir}`);
