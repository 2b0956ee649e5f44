/**
 * Benchmark: LPIPS (AlexNet) against penultimate-embedding distance (paper Table 2), in
 * tfjs and in PyTorch on this machine, reported side by side as tfjs / PyTorch ratios.
 *
 *     npx tsc -p tsconfig.json && node dist/bench/similarity.js [--pool-sizes 32,128,512] \
 *       [--embed-pool-sizes 1024,4096,16384] [--backbones resnet50,dino_vits16] [--repeats 3] [--backend wasm] [--no-torch] [--out bench/similarity-results.md]
 *
 * The PyTorch side is bench/similarity_torch.py, run with /usr/bin/python3 (2 threads).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { initBackend } from '../src/backends/chain.js';
import { atomicWriteFile } from '../src/core/fsutil.js';
import { PACKAGE_ROOT } from '../src/core/version.js';
import { benchSimilarity, similarityMarkdown, type SimilarityBenchResult } from '../src/analysis/similarity.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

interface TorchMethod {
  method: string;
  dims: number;
  embedSecondsPerImage: number;
  rank: { pool: number; seconds: number }[];
  rankBatch: { pool: number; seconds: number }[];
}

const pools = arg('pool-sizes', '32,128,512');
const embedPools = arg('embed-pool-sizes', '1024,4096,16384');
const backbones = arg('backbones', 'resnet50,dino_vits16');
const repeats = Number(arg('repeats', '3'));
const queryBatch = Number(arg('query-batch', '32'));
const out = arg('out', path.join(PACKAGE_ROOT, 'bench', 'similarity-results.md'));

const backend = await initBackend(arg('backend', process.env.DCD_BACKEND ?? 'auto'));
const r: SimilarityBenchResult = await benchSimilarity({
  backbones: backbones.split(','),
  poolSizes: pools.split(',').map(Number),
  embedPoolSizes: embedPools.split(',').map(Number),
  repeats,
  queryBatch,
});
let md = `# Similarity cost: LPIPS (AlexNet) vs penultimate embeddings\n\n## tfjs (\`${backend}\`)\n\n` + similarityMarkdown(r);

const py = '/usr/bin/python3';
if (!process.argv.includes('--no-torch') && existsSync(py)) {
  const p = spawnSync(py, [path.join(PACKAGE_ROOT, 'bench', 'similarity_torch.py'), '--pool-sizes', pools, '--embed-pool-sizes', embedPools, '--backbones', backbones, '--repeats', String(repeats), '--query-batch', String(queryBatch)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (p.status !== 0) {
    md += `\n## PyTorch\n\nsimilarity_torch.py failed (exit ${p.status}): ${p.stderr.trim().split('\n').slice(-1)[0]}\n`;
  } else {
    const t = JSON.parse(p.stdout) as { torch: string; threads: number; methods: TorchMethod[] };
    const poolList = [...new Set(t.methods.flatMap((m) => m.rank.map((x) => x.pool)))].sort((a, b) => a - b);
    md += `\n## PyTorch ${t.torch} (CPU, ${t.threads} threads), same measurements, and tfjs / PyTorch time ratios\n\n`;
    md += `| method | embed s / image (torch) | embed ratio | ${poolList.map((n) => `rank ${n} ms (torch) | ratio`).join(' | ')} |\n`;
    md += `|---|---:|---:|${poolList.map(() => '---:|---:').join('|')}|\n`;
    for (const tm of t.methods) {
      const jm = r.methods.find((m) => m.method === tm.method);
      const ratio = (a: number | undefined, b: number) => (a !== undefined && b > 0 ? (a / b).toFixed(2) : '');
      const cells = poolList.map((n) => {
        const ts = tm.rank.find((x) => x.pool === n)?.seconds;
        const js = jm?.rank.find((x) => x.pool === n)?.seconds;
        return ts === undefined ? '– | ' : `${(ts * 1000).toFixed(2)} | ${ratio(js, ts)}`;
      });
      md += `| ${tm.method} | ${tm.embedSecondsPerImage.toFixed(3)} | ${ratio(jm?.embedSecondsPerImage, tm.embedSecondsPerImage)} | ${cells.join(' | ')} |\n`;
    }
    md += `\nRanking ${queryBatch} queries at once, PyTorch ms and tfjs / PyTorch ratio:\n\n`;
    md += `| method | ${poolList.map((n) => `pool ${n} (torch) | ratio`).join(' | ')} |\n|---|${poolList.map(() => '---:|---:').join('|')}|\n`;
    for (const tm of t.methods) {
      const jm = r.methods.find((m) => m.method === tm.method);
      const cells = poolList.map((n) => {
        const ts = tm.rankBatch.find((x) => x.pool === n)?.seconds;
        const js = jm?.rankBatch.find((x) => x.pool === n)?.seconds;
        return ts === undefined ? '– | ' : `${(ts * 1000).toFixed(2)} | ${js !== undefined && ts > 0 ? (js / ts).toFixed(2) : ''}`;
      });
      md += `| ${tm.method} | ${cells.join(' | ')} |\n`;
    }
    md += '\nRatios above 1: tfjs slower. PyTorch ViT-S is torchvision `VisionTransformer` with DINO ViT-S sizes; weights are random on both sides.\n';
  }
}
await atomicWriteFile(out, md);
process.stdout.write(md);
process.stderr.write(`wrote ${out}\n`);
