#include "report/html_report.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "report/report_data.hpp"

namespace hwnas::report {
namespace {

const char* const kStyle = R"CSS(
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em;
       color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.muted { color: #666; }
.device { margin-bottom: 2em; }
.charts { display: grid; grid-template-columns: 3fr 2fr; gap: 1em; }
.chart { position: relative; height: 360px; }
.controls { margin: 0.5em 0; }
.controls label { margin-right: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; }
th { background: #f4f4f4; }
td.text { text-align: left; max-width: 520px; overflow: hidden; text-overflow: ellipsis;
          white-space: nowrap; }
td.front { background: #fde7c8; font-weight: 600; }
pre { background: #f7f7f7; padding: 0.8em; overflow: auto; max-height: 400px; }
#details { position: fixed; right: 1em; bottom: 1em; width: 420px; max-height: 60vh;
           overflow: auto; background: #fff; border: 1px solid #999; padding: 0.6em;
           box-shadow: 0 2px 8px rgba(0,0,0,.2); display: none; font-size: 12px; }
)CSS";

// The page's own script: reads the embedded data and draws everything with Chart.js.
const char* const kScript = R"JS(
'use strict';
const D = JSON.parse(document.getElementById('hwnas-data').textContent);
Chart.defaults.animation = false;
const metric = D.metric.name;
const costNames = ['latency_ms', 'energy_mj', 'memory_bytes'];
const costLabel = {latency_ms: 'latency (ms)', energy_mj: 'energy (mJ)', memory_bytes: 'memory (bytes)'};
const byId = new Map(D.evaluations.map(e => [e.id, e]));
const ok = D.evaluations.filter(e => e.status === 'ok' && typeof e.metrics[metric] === 'number');

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
  return String(+v.toPrecision(4));
}
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return n;
}
function showDetails(id) {
  const e = byId.get(id), box = document.getElementById('details');
  box.replaceChildren(
      el('b', {}, `evaluation ${e.id} · architecture ${e.arch_id} (${e.hash})`),
      el('div', {}, e.summary || ''), el('div', {class: 'muted'}, e.description),
      el('pre', {}, JSON.stringify({metrics: e.metrics, costs: e.costs}, null, 1)),
      el('button', {onclick: 'this.parentNode.style.display="none"'}, 'close'));
  box.style.display = 'block';
}
function tooltipLines(e, dev) {
  const c = e.costs[dev] || {};
  return [`#${e.id} arch ${e.arch_id} ${e.hash.slice(0, 8)}`, (e.summary || e.description).slice(0, 90),
          `${metric} ${fmt(e.metrics[metric])}`,
          `latency ${fmt(c.latency_ms)} ms · energy ${fmt(c.energy_mj)} mJ · memory ${fmt(c.memory_bytes)} B`]
      .concat(c.feasible === false ? [`infeasible: ${c.reason}`] : []);
}

function deviceSection(dev) {
  const front = new Set(D.fronts[dev] || []);
  const sec = el('section', {class: 'device', id: 'device-' + dev});
  sec.append(el('h2', {}, dev));
  const axis = el('select', {});
  for (const c of costNames) {
    const o = el('option', {value: c}, costLabel[c]);
    if (c === (D.cost || 'latency_ms')) o.selected = true;
    axis.append(o);
  }
  const logBox = el('input', {type: 'checkbox', checked: ''});
  sec.append(el('div', {class: 'controls'}, el('label', {}, 'x axis ', axis),
                el('label', {}, logBox, ' log scale')));
  const scatterBox = el('div', {class: 'chart scatter', 'data-device': dev});
  const scatterCanvas = el('canvas', {});
  scatterBox.append(scatterCanvas);
  const histBox = el('div', {class: 'chart history'});
  const histCanvas = el('canvas', {});
  histBox.append(histCanvas);
  sec.append(el('div', {class: 'charts'}, scatterBox, histBox));

  let chart = null;
  function points(cost) {
    const normal = [], best = [], bad = [];
    for (const e of ok) {
      const c = e.costs[dev];
      if (!c || typeof c[cost] !== 'number' || !(c[cost] > 0 || !logBox.checked)) continue;
      const p = {x: c[cost], y: e.metrics[metric], id: e.id};
      if (!c.feasible) bad.push(p);
      else if (front.has(e.id)) best.push(p);
      else normal.push(p);
    }
    best.sort((a, b) => a.x - b.x);
    return [normal, best, bad];
  }
  function draw() {
    const cost = axis.value;
    const [normal, best, bad] = points(cost);
    if (chart) chart.destroy();
    chart = new Chart(scatterCanvas, {
      type: 'scatter',
      data: {datasets: [
        {label: 'evaluated', data: normal, backgroundColor: 'rgba(70,110,180,0.45)'},
        {label: 'Pareto front', data: best, showLine: true, borderColor: '#e07b00',
         backgroundColor: '#e07b00', pointRadius: 5},
        {label: 'infeasible', data: bad, pointStyle: 'crossRot', pointRadius: 6,
         borderColor: '#c00', backgroundColor: '#c00'}]},
      options: {
        maintainAspectRatio: false,
        scales: {x: {type: logBox.checked ? 'logarithmic' : 'linear',
                     title: {display: true, text: costLabel[cost] + ' on ' + dev}},
                 y: {title: {display: true, text: metric}}},
        plugins: {tooltip: {callbacks: {label: ctx => tooltipLines(byId.get(ctx.raw.id), dev)}}},
        onClick: (evt, items) => {
          if (items.length) showDetails(chart.data.datasets[items[0].datasetIndex].data[items[0].index].id);
        }
      }
    });
    scatterBox.dataset.points = normal.length + best.length + bad.length;
    scatterBox.dataset.front = best.length;
    scatterBox.dataset.infeasible = bad.length;
  }
  axis.addEventListener('change', draw);
  logBox.addEventListener('change', draw);
  draw();

  const h = D.history[dev];
  if (h) {
    // Axis range from the data with 5% padding: Chart.js spans a constant series over +-1,
    // which for a best accuracy that never changed reads as an axis from -0.5 to 2.
    const range = (values) => {
      const v = values.filter(Number.isFinite);
      if (!v.length) return {};
      const lo = Math.min(...v), hi = Math.max(...v);
      const d = hi > lo ? (hi - lo) * 0.05 : Math.max(Math.abs(hi) * 0.05, 1e-3);
      return {min: lo - d, max: hi + d};
    };
    new Chart(histCanvas, {
      type: 'line',
      data: {labels: h.hypervolume.map((_, i) => i + 1), datasets: [
        {label: `hypervolume (${metric} × ${h.cost})`, data: h.hypervolume, yAxisID: 'hv',
         borderColor: '#2a7', pointRadius: 0},
        {label: `best ${metric}`, data: h.best, yAxisID: 'best', borderColor: '#46b',
         pointRadius: 0}]},
      options: {maintainAspectRatio: false,
                scales: {x: {title: {display: true, text: 'evaluations'}},
                         hv: {position: 'left', ...range(h.hypervolume)},
                         best: {position: 'right', grid: {drawOnChartArea: false}, ...range(h.best)}}}
    });
  }

  const rows = (D.fronts[dev] || []).map(id => byId.get(id)).filter(e => e);
  const table = el('table', {class: 'front-table'},
      el('tr', {}, el('th', {}, 'eval'), el('th', {}, 'arch'), el('th', {}, metric),
         el('th', {}, 'latency ms'), el('th', {}, 'energy mJ'), el('th', {}, 'memory B'),
         el('th', {}, 'activity'), el('th', {}, 'description')));
  for (const e of rows) {
    const c = e.costs[dev] || {};
    const tr = el('tr', {}, el('td', {}, e.id), el('td', {}, e.hash.slice(0, 8)),
        el('td', {}, fmt(e.metrics[metric])), el('td', {}, fmt(c.latency_ms)),
        el('td', {}, fmt(c.energy_mj)), el('td', {}, fmt(c.memory_bytes)),
        el('td', {}, c.activity_source || ''), el('td', {class: 'text', title: e.description}, e.summary || e.description));
    tr.addEventListener('click', () => showDetails(e.id));
    table.append(tr);
  }
  sec.append(el('h3', {}, `front members (${rows.length})`), table);
  return sec;
}

function crossDevice() {
  const sec = el('section', {id: 'cross-device'});
  const cost = D.agreement.cost;
  sec.append(el('h2', {}, 'Across devices'));
  sec.append(el('p', {class: 'muted'},
      `Rank of each front member by ${cost} among all feasible evaluations of each device ` +
      '(1 = cheapest); shaded cells are on that device\'s front.'));
  const ids = [...new Set(D.devices.flatMap(d => D.fronts[d] || []))].sort((a, b) => a - b);
  const rank = {};
  for (const d of D.devices) {
    const vals = ok.filter(e => e.costs[d] && e.costs[d].feasible && typeof e.costs[d][cost] === 'number')
                   .map(e => [e.id, e.costs[d][cost]]).sort((a, b) => a[1] - b[1]);
    rank[d] = new Map(vals.map((v, i) => [v[0], i + 1]));
  }
  const t = el('table', {}, el('tr', {}, el('th', {}, 'eval'), el('th', {}, metric),
      ...D.devices.map(d => el('th', {}, d)), el('th', {}, 'description')));
  for (const id of ids) {
    const e = byId.get(id);
    if (!e) continue;
    t.append(el('tr', {}, el('td', {}, id), el('td', {}, fmt(e.metrics[metric])),
        ...D.devices.map(d => el('td', {class: (D.fronts[d] || []).includes(id) ? 'front' : ''},
                                 rank[d].has(id) ? `${rank[d].get(id)} (${fmt(e.costs[d][cost])})` : '–')),
        el('td', {class: 'text', title: e.description}, e.summary || e.description)));
  }
  sec.append(t);
  sec.append(el('h3', {}, `Kendall's tau between the devices' rankings by ${cost}`));
  const k = el('table', {id: 'kendall'}, el('tr', {}, el('th', {}, ''), ...D.agreement.devices.map(d => el('th', {}, d))));
  D.agreement.devices.forEach((d, i) => k.append(el('tr', {}, el('th', {}, d),
      ...D.agreement.kendall_tau[i].map(v => el('td', {}, fmt(v))))));
  sec.append(k);
  return sec;
}

const main = document.getElementById('main');
const r = D.run;
const failed = D.evaluations.length - ok.length;
document.title = `hwnas report: ${r.name} (run ${r.id})`;
main.append(el('h1', {}, `${r.name} — run ${r.id}`),
    el('p', {class: 'muted'}, `status ${r.status} · started ${r.started_at}` +
       (r.finished_at ? ` · finished ${r.finished_at}` : '') +
       ` · ${D.evaluations.length} evaluations (${failed} failed or without ${metric})` +
       ` · objective ${metric} (${D.metric.maximize ? 'max' : 'min'})` + (D.cost ? ` vs ${D.cost}` : '')));
if (D.devices.length === 0) main.append(el('p', {}, 'No costs stored yet.'));
for (const d of D.devices) main.append(deviceSection(d));
if (D.devices.length > 0) main.append(crossDevice());
main.append(el('h2', {}, 'Config'), el('pre', {id: 'config'}, JSON.stringify(r.config, null, 2)));
document.body.dataset.rendered = '1';
)JS";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::invalid_argument("Chart.js not found at " + path +
                                "; install Debian's libjs-chart.js (scripts/setup.sh does)");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Text that may sit inside <script>: "</" would end the element early.
std::string script_safe(std::string s) {
  for (std::size_t p = 0; (p = s.find("</", p)) != std::string::npos; p += 3)
    s.replace(p, 2, "<\\/");
  return s;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string render_html(const nlohmann::json& data, const ReportOptions& options) {
  const std::string chartjs = read_file(options.chartjs_path);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  if (options.refresh_seconds > 0)
    h << "<meta http-equiv=\"refresh\" content=\"" << options.refresh_seconds << "\">\n";
  h << "<title>hwnas report: " << html_escape(data.at("run").value("name", std::string("run")))
    << "</title>\n"
    << "<style>" << kStyle << "</style>\n</head>\n<body>\n<div id=\"main\"></div>\n"
    << "<div id=\"details\"></div>\n"
    // error_handler_t::replace: a stored string with invalid UTF-8 must not break the report.
    << "<script id=\"hwnas-data\" type=\"application/json\">"
    << script_safe(data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
    << "</script>\n<script>" << script_safe(chartjs) << "</script>\n<script>" << kScript
    << "</script>\n</body>\n</html>\n";
  return h.str();
}

void write_report(const db::Store& store, std::int64_t run_id, const std::string& out_path,
                  const ReportOptions& options, const GenomeSummary& summary) {
  const std::string html = render_html(collect_run(store, run_id, summary), options);
  namespace fs = std::filesystem;
  const fs::path out(out_path);
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" +
                                            std::to_string(static_cast<long>(::getpid())));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp.string());
    f << html;
    f.flush();
    if (!f) {
      f.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error("writing " + out_path + " failed (disk full?); no report written");
    }
  }
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot move the report into place at " + out_path);
  }
}

}  // namespace hwnas::report
