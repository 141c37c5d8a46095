// charts.js — the two charts of a release (uPlot, embedded in the binary and
// loaded by index.html as the global `uPlot`), fed by
// GET /api/v1/apps/<app>/releases/<v>/adoption?channel=&period= (points of
// distinct devices per period, by the time the server received the reports):
//
//   adoption   installs in each period (bars) and installs so far (line)
//   rates      the share of devices that failed the release and that rolled
//              back from it, so far, at the end of each period, over the
//              devices that installed or failed it so far; with the app's
//              guardrail rate drawn as a horizontal line, since the
//              guardrail halts a rollout once its share of bad devices is
//              above that rate (with at least its minimum of devices)
//
// uPlot sets element styles through the CSSOM only, which the page's
// Content-Security-Policy allows (style-src 'self' forbids style
// attributes and inline <style>, not element.style).

import { el, clear } from './dom.js';

const HEIGHT = 240;

function plotWidth(container) {
  return Math.max(320, Math.min(900, container.clientWidth || 640));
}

// The series of both charts from the adoption points (oldest first).
export function chartData(points) {
  const xs = [];
  const installs = [];
  const total = [];
  const failRate = [];
  const backRate = [];
  let installed = 0;
  let failed = 0;
  let rolledBack = 0;
  for (const p of points) {
    installed += p.installed;
    failed += p.failed;
    rolledBack += p.rolled_back;
    const tried = installed + failed;
    xs.push(p.at);
    installs.push(p.installed);
    total.push(p.installed_total);
    failRate.push(tried ? (100 * failed) / tried : 0);
    backRate.push(tried ? (100 * rolledBack) / tried : 0);
  }
  return { adoption: [xs, installs, total], rates: [xs, failRate, backRate] };
}

// The time axis: the periods shown, with half a period either side, from
// the data itself (for a single point uPlot would otherwise show a span of
// 1000 days).
function timeScale(period) {
  return {
    time: true,
    range: (u) => {
      const xs = u.data[0];
      return [xs[0] - period / 2, xs[xs.length - 1] + period / 2];
    },
  };
}

const pct = (u, v) => (v == null ? '—' : `${v.toFixed(1)}%`);

function adoptionOptions(width, period) {
  const bars = globalThis.uPlot.paths.bars({ size: [0.6, 60], align: 0 });
  return {
    title: 'Adoption: installs per period and in total',
    width,
    height: HEIGHT,
    scales: { x: timeScale(period), y: { range: (u, min, max) => [0, Math.max(5, Math.ceil(max * 1.15))] } },
    axes: [{}, { label: 'devices' }],
    series: [
      {},
      { label: 'installs in the period', stroke: '#3867d6', fill: 'rgba(56,103,214,0.35)',
        paths: bars, points: { show: false } },
      { label: 'installs so far', stroke: '#20bf6b', width: 2, points: { size: 7 } },
    ],
  };
}

// Draws the guardrail's rate across the whole plot, dashed, with its value.
function guardrailHook(rate) {
  return (u) => {
    const { ctx, bbox } = u;
    const y = Math.round(u.valToPos(rate, 'y', true));
    ctx.save();
    ctx.strokeStyle = '#4b6584';
    ctx.lineWidth = 1.5 * globalThis.devicePixelRatio;
    ctx.setLineDash([6 * globalThis.devicePixelRatio, 4 * globalThis.devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(bbox.left, y);
    ctx.lineTo(bbox.left + bbox.width, y);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#4b6584';
    ctx.font = `${12 * globalThis.devicePixelRatio}px sans-serif`;
    ctx.textAlign = 'right';
    ctx.fillText(`guardrail ${rate.toFixed(1)}%`, bbox.left + bbox.width - 4, y - 4);
    ctx.restore();
  };
}

function ratesOptions(width, period, ratesMax, rate) {
  return {
    title: 'Failure and rollback rates so far, with the guardrail',
    width,
    height: HEIGHT,
    scales: { x: timeScale(period), y: { range: () => [0, ratesMax] } },
    axes: [{}, { label: '% of devices', values: (u, vals) => vals.map((v) => `${v}%`) }],
    series: [
      {},
      { label: 'failed', stroke: '#eb3b5a', width: 2, value: pct, points: { size: 7 } },
      { label: 'rolled back', stroke: '#fa8231', width: 2, value: pct, points: { size: 7 } },
    ],
    hooks: { draw: [guardrailHook(rate)] },
  };
}

// The charts of one release in `container`; update() gives them new data.
export class ReleaseCharts {
  constructor(container) {
    this.container = container;
    this.plots = null;
    this.key = '';
  }

  // points: the adoption points; period: their length in seconds; guardRateBp:
  // the app's guardrail rate in basis points.
  update(points, period, guardRateBp) {
    const data = chartData(points);
    const rate = guardRateBp / 100;
    const peak = Math.max(0, ...data.rates[1], ...data.rates[2]);
    const ratesMax = Math.max(10, Math.ceil((Math.max(peak, rate) * 1.25) / 5) * 5);
    const key = `${points.length ? 'some' : 'none'}/${ratesMax}/${period}/${guardRateBp}`;
    if (this.plots && key === this.key) {
      this.plots.adoption.setData(data.adoption);
      this.plots.rates.setData(data.rates);
      return;
    }
    this.destroy();
    this.key = key;
    clear(this.container);
    if (!points.length) {
      this.container.append(el('p', { class: 'empty' },
        'No device has reported installing, failing or rolling back this release yet.'));
      return;
    }
    const width = plotWidth(this.container);
    const a = el('div', { class: 'chart', id: 'chart-adoption' });
    const r = el('div', { class: 'chart', id: 'chart-rates' });
    this.container.append(a, r, el('p', { class: 'hint', id: 'chart-guardrail' },
      `The dashed line is the app's guardrail, ${rate.toFixed(1)}%: the server halts a rollout ` +
      'whose share of devices that failed or rolled back goes above it.'));
    const UPlot = globalThis.uPlot;
    this.plots = {
      adoption: new UPlot(adoptionOptions(width, period), data.adoption, a),
      rates: new UPlot(ratesOptions(width, period, ratesMax, rate), data.rates, r),
    };
  }

  destroy() {
    if (this.plots) {
      this.plots.adoption.destroy();
      this.plots.rates.destroy();
    }
    this.plots = null;
  }
}
