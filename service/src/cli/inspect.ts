import type { Command } from 'commander';
import { modelSignature } from '../core/onnx/io.js';
import { int64ToNumber } from '../core/onnx/proto.js';
import { checkOperators, discoverStructure } from '../core/structure/discover.js';
import { GraphIndex } from '../core/onnx/graph.js';
import { loadModelFile } from '../runtime/model-file.js';
import { collectShape, resolveShapes } from './model-shapes.js';
import { formatCount, printJson, table, type GlobalOptions } from './output.js';

interface InspectOptions extends GlobalOptions {
  shape?: string[];
}

export function registerInspect(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  program
    .command('inspect')
    .description('list the units of a model (residual and transformer blocks, convolutions, activations) and what can be removed')
    .argument('<model>', 'an .onnx file')
    .option('--shape <input=dims>', 'bind an input shape, e.g. input=1x3x224x224 (repeatable)', collectShape)
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: InspectOptions) => run(() => inspect(path, o), o));
}

export async function inspect(path: string, o: InspectOptions): Promise<void> {
  const loaded = loadModelFile(path);
  // name unknown operators before onnxruntime sees the model and fails less helpfully
  checkOperators(new GraphIndex(loaded.model.graph ?? {}));
  const { shapes, inputShapes } = await resolveShapes(loaded.model, o.shape);
  const structure = discoverStructure(loaded.model, shapes);
  const sig = modelSignature(loaded.model);
  const idx = new GraphIndex(loaded.model.graph ?? {});
  let parameters = 0;
  for (const t of idx.initializers.values()) parameters += (t.dims ?? []).map(int64ToNumber).reduce((a, b) => a * b, 1);
  const top = structure.units.filter((u) => !u.parent);
  const macs = top.every((u) => u.macs !== null) ? top.reduce((a, u) => a + (u.macs ?? 0), 0) : null;
  const opset = (loaded.model.opset_import ?? []).map((s) => ({ domain: s.domain ?? '', version: int64ToNumber(s.version) }));
  const report = {
    model: path,
    sha256: loaded.sha256,
    producer: `${loaded.model.producer_name ?? ''} ${loaded.model.producer_version ?? ''}`.trim(),
    opset: opset.find((s) => s.domain === '' || s.domain === 'ai.onnx')?.version ?? null,
    opsets: opset,
    inputs: sig.inputs.map((i) => ({ ...i, bound: inputShapes.get(i.name) })),
    outputs: sig.outputs,
    nodes: idx.nodes.length,
    parameters,
    macs,
    units: structure.units,
    warnings: structure.warnings,
  };
  if (o.json) {
    printJson(report);
    return;
  }
  const lines: string[] = [];
  lines.push(`${path}  (${report.producer || 'unknown producer'}, opset ${report.opset ?? '?'}, ${report.nodes} nodes)`);
  lines.push(`parameters ${formatCount(parameters)}   MACs/sample ${formatCount(macs)}`);
  for (const i of report.inputs) lines.push(`input  ${i.name} ${i.dtype} [${i.dims.join(', ')}]`);
  for (const out of report.outputs) lines.push(`output ${out.name} ${out.dtype} [${out.dims.join(', ')}]`);
  const counts = new Map<string, [number, number]>();
  for (const u of structure.units) {
    const c = counts.get(u.kind) ?? [0, 0];
    c[0]++;
    if (u.removable) c[1]++;
    counts.set(u.kind, c);
  }
  lines.push(`units: ${[...counts].map(([k, [n, r]]) => `${n} ${k} (${r} removable)`).join(', ')}`);
  lines.push('');
  const rows = structure.units.map((u) => {
    const depth = u.parent ? (structure.units.find((p) => p.id === u.parent)?.parent ? 2 : 1) : 0;
    const detail = u.conv
      ? `${u.conv.kernel.join('x')} s${u.conv.stride.join('x')} ${u.conv.inChannels}→${u.conv.outChannels}${u.conv.depthwise ? ' dw' : u.conv.groups > 1 ? ` g${u.conv.groups}` : ''}`
      : (u.activation ?? u.skip ?? '');
    return [
      `${'  '.repeat(depth)}${u.id}`,
      u.kind,
      detail,
      `[${(u.outputShape ?? []).join('x')}]`,
      formatCount(u.parameters),
      formatCount(u.macs),
      u.removable ? 'yes' : `no: ${u.reason ?? ''}`,
    ];
  });
  lines.push(table(rows, ['unit', 'kind', 'detail', 'output', 'params', 'MACs', 'removable']));
  for (const w of structure.warnings) lines.push(`warning: ${w}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
