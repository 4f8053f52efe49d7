/** An SVG heat map of a similarity matrix, with segment boundaries drawn as boxes. */
export function heatmapSvg(units: string[], matrix: number[][], segments: string[][]): string {
  const n = units.length;
  const cell = Math.max(8, Math.min(28, Math.floor(560 / Math.max(n, 1))));
  const label = 8 + Math.max(...units.map((u) => u.length)) * 6.5;
  const size = label + n * cell + 10;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const color = (v: number) => {
    // white (0) → dark blue (1)
    const t = Math.max(0, Math.min(1, v));
    const r = Math.round(255 - 222 * t);
    const g = Math.round(255 - 180 * t);
    const b = Math.round(255 - 75 * t);
    return `rgb(${r},${g},${b})`;
  };
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" font-family="monospace" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  units.forEach((u, i) => {
    parts.push(`<text x="${label - 4}" y="${label + i * cell + cell * 0.7}" text-anchor="end">${esc(u)}</text>`);
    parts.push(
      `<text transform="translate(${label + i * cell + cell * 0.7},${label - 4}) rotate(-90)">${esc(u)}</text>`,
    );
  });
  matrix.forEach((row, i) =>
    row.forEach((v, j) =>
      parts.push(`<rect x="${label + j * cell}" y="${label + i * cell}" width="${cell}" height="${cell}" fill="${color(v)}"><title>${esc(units[i]!)} × ${esc(units[j]!)}: ${v.toFixed(3)}</title></rect>`),
    ),
  );
  let start = 0;
  for (const seg of segments) {
    parts.push(`<rect x="${label + start * cell}" y="${label + start * cell}" width="${seg.length * cell}" height="${seg.length * cell}" fill="none" stroke="#d62728" stroke-width="2"/>`);
    start += seg.length;
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
