/** Small self-contained SVG charts for bench results: throughput by thread count, and p50/p99/p99.9 latency. */
import type { BenchRow } from './bench.js';
import type { LocksRow } from './bench-locks.js';

const COLORS: Record<string, string> = {
  daxstore: '#1f77b4',
  lmdb: '#ff7f0e',
  'entry-locks': '#1f77b4',
  'page-locks': '#d62728',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Two panels: grouped bars of ops/s per thread count, and of latency percentiles (log scale) per store. */
export function benchChartSvg(title: string, rows: readonly BenchRow[]): string {
  const W = 720;
  const H = 300;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="18" font-size="14">${esc(title)}</text>`,
  ];
  const stores = [...new Set(rows.map((r) => r.store))];
  const threads = [...new Set(rows.map((r) => r.threads))].sort((a, b) => a - b);
  parts.push(
    ...bars(
      20,
      40,
      320,
      220,
      'ops/s by threads',
      threads.map(String),
      stores,
      (g, s) => rows.find((r) => r.threads === threads[g] && r.store === s)?.opsPerSec ?? 0,
      false,
    ),
  );
  const pct = ['p50', 'p90', 'p99', 'p999'] as const;
  const maxThreads = threads[threads.length - 1];
  parts.push(
    ...bars(
      380,
      40,
      320,
      220,
      `latency ns at ${maxThreads} threads (log)`,
      ['p50', 'p90', 'p99', 'p99.9'],
      stores,
      (g, s) => rows.find((r) => r.threads === maxThreads && r.store === s)?.latencyNs[pct[g]] ?? 0,
      true,
    ),
  );
  stores.forEach((s, i) =>
    parts.push(
      `<rect x="${W - 150 + i * 70}" y="8" width="10" height="10" fill="${COLORS[s]}"/><text x="${W - 136 + i * 70}" y="17">${s}</text>`,
    ),
  );
  parts.push('</svg>');
  return parts.join('\n');
}

/** bench locks: ops/s per role (log scale), entry locks beside page locks, one panel per entry size. */
export function locksChartSvg(title: string, rows: readonly LocksRow[]): string {
  const W = 720;
  const H = 300;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="18" font-size="13">${esc(title)}</text>`,
  ];
  const paths = ['entry-locks', 'page-locks'];
  const roles = [...new Set(rows.map((r) => r.role))];
  [...new Set(rows.map((r) => r.entryBytes))].forEach((entryBytes, panel) => {
    const name = entryBytes >= 2 ** 20 ? `${entryBytes / 2 ** 20} MiB` : `${entryBytes / 1024} KiB`;
    const value = (g: number, s: string): number =>
      rows.find((r) => r.entryBytes === entryBytes && r.role === roles[g] && r.path === s)?.workOpsPerSec ?? 0;
    parts.push(
      ...bars(20 + panel * 360, 50, 320, 210, `${name} entries: work ops/s per role (log)`, roles, paths, value, true),
    );
  });
  paths.forEach((s, i) =>
    parts.push(
      `<rect x="${W - 200 + i * 95}" y="26" width="10" height="10" fill="${COLORS[s]}"/><text x="${W - 186 + i * 95}" y="35">${s}</text>`,
    ),
  );
  parts.push('</svg>');
  return parts.join('\n');
}

function bars(
  x: number,
  y: number,
  w: number,
  h: number,
  label: string,
  groups: string[],
  series: string[],
  value: (g: number, s: string) => number,
  log: boolean,
): string[] {
  const scale = (v: number): number => (log ? Math.log10(Math.max(1, v)) : v);
  const max = Math.max(1e-9, ...groups.flatMap((_, g) => series.map((s) => scale(value(g, s)))));
  const out = [
    `<text x="${x}" y="${y - 6}">${esc(label)}</text>`,
    `<line x1="${x}" y1="${y + h}" x2="${x + w}" y2="${y + h}" stroke="black"/>`,
  ];
  const gw = w / Math.max(1, groups.length);
  const bw = (gw * 0.8) / Math.max(1, series.length);
  groups.forEach((name, g) => {
    series.forEach((s, i) => {
      const v = value(g, s);
      const bh = (scale(v) / max) * (h - 14);
      const bx = x + g * gw + gw * 0.1 + i * bw;
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${(y + h - bh).toFixed(1)}" width="${bw.toFixed(1)}" height="${bh.toFixed(1)}" fill="${COLORS[s] ?? '#888'}"><title>${s} ${name}: ${v}</title></rect>`,
      );
      out.push(
        `<text x="${(bx + bw / 2).toFixed(1)}" y="${(y + h - bh - 2).toFixed(1)}" text-anchor="middle" font-size="9">${compact(v)}</text>`,
      );
    });
    out.push(
      `<text x="${(x + g * gw + gw / 2).toFixed(1)}" y="${y + h + 14}" text-anchor="middle">${esc(name)}</text>`,
    );
  });
  return out;
}

function compact(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}
