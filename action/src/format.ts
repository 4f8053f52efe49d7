/** Number formats shared by the report and the log, fixed so the output never depends on a locale. */

/** +0.12 pt, −1.50 pt (a real minus sign), ±0.00 pt */
export function pt(v: number): string {
  const r = Math.abs(v) < 0.005 ? 0 : v;
  return `${r > 0 ? '+' : r < 0 ? '−' : '±'}${Math.abs(r).toFixed(2)} pt`;
}

/** 1.43× */
export function x(v: number): string {
  return `${v.toFixed(2)}×`;
}

/** 91.90% from 0.919 */
export function percent(v: number): string {
  return `${(v * 100).toFixed(2)}%`;
}

/** Milliseconds with about three significant digits. */
export function ms(v: number): string {
  return v.toFixed(v < 1 ? 3 : v < 10 ? 2 : v < 100 ? 1 : 0);
}

/** 272,474: thousands grouped by hand, as Intl's output varies with the ICU build. */
export function count(v: number): string {
  return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
