import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { enumerateCandidates } from '../../service/src/core/layermerge/chain.js';
import { type BlockChoice, emitLayerMerge } from '../../service/src/core/layermerge/emit.js';
import { type ExtractedChain, extractChain } from '../../service/src/core/layermerge/extract.js';
import { stepsBorderBand } from '../../service/src/core/layermerge/merge.js';
import { blockSteps } from '../../service/src/core/layermerge/chain.js';
import { removeUnits } from '../../service/src/core/compress/remove-units.js';
import { encodeModel } from '../../service/src/core/onnx/codec.js';
import { addOutputs, cloneModel } from '../../service/src/core/onnx/edit.js';
import { declaredShapes } from '../../service/src/core/onnx/graph.js';
import type { ModelProto } from '../../service/src/core/onnx/proto.js';
import { modelSignature } from '../../service/src/core/onnx/io.js';
import { discoverStructure } from '../../service/src/core/structure/discover.js';
import type { Unit } from '../../service/src/core/structure/unit.js';
import { randomFeeds } from '../../service/src/runtime/latency.js';
import { loadModelFile } from '../../service/src/runtime/model-file.js';
import { createSession } from '../../service/src/runtime/session.js';
import { probeShapes } from '../../service/src/runtime/shape-probe.js';
import { fixtureModel, type ModelName } from '../helpers/paths.js';

interface Fixture {
  model: ModelProto;
  units: Unit[];
  x: ExtractedChain;
}

const cache = new Map<ModelName, Fixture>();

async function fixture(name: ModelName): Promise<Fixture> {
  const have = cache.get(name);
  if (have) return have;
  const model = loadModelFile(fixtureModel(name)).model;
  const shapes = declaredShapes(model);
  for (const [k, v] of await probeShapes(model, new Map([['input', [1, 1, 28, 28]]]))) shapes.set(k, v);
  const { units } = discoverStructure(model, shapes);
  const f = { model, units, x: extractChain(model, units, shapes) };
  cache.set(name, f);
  return f;
}

const interiorBarriers = (x: ExtractedChain) => x.chain.layers.slice(0, -1).filter((l) => l.barrierAfter).map((l) => l.id);

// Expected figures follow from the architectures in tests/fixtures/README.md.

test('ResNet-20: 19 chained convs (stem + 18 in blocks), 9 skips (7 identity, 2 projection), an activation at every position', async () => {
  const { x } = await fixture('resnet20');
  assert.equal(x.chain.layers.length, 19);
  assert.deepEqual(
    x.chain.residuals.map((r) => [r.start, r.end, r.skip]),
    [
      [1, 3, 'identity'],
      [3, 5, 'identity'],
      [5, 7, 'identity'],
      [7, 9, 'projection'],
      [9, 11, 'identity'],
      [11, 13, 'identity'],
      [13, 15, 'projection'],
      [15, 17, 'identity'],
      [17, 19, 'identity'],
    ],
  );
  assert.ok(x.chain.layers.every((l) => l.activationAfter));
  assert.deepEqual(interiorBarriers(x), []);
  const strided = x.chain.layers.map((l, m) => (l.spec.stride[0] === 2 ? m : -1)).filter((m) => m >= 0);
  assert.deepEqual(strided, [7, 13]);
  const proj = x.chain.residuals.filter((r) => r.projection).map((r) => [r.projection!.kh, r.projection!.stride[0], r.projection!.cout]);
  assert.deepEqual(proj, [
    [1, 2, 32],
    [1, 2, 64],
  ]);
  // the post-Add ReLU sits at the residual's end position
  assert.equal(x.activations[3]?.input, x.residuals[0]!.output);
});

test('MobileNetV2: 28 chained convs (9 depthwise), 5 identity skips, 19 activations, none after a projection conv', async () => {
  const { x } = await fixture('mobilenetv2');
  assert.equal(x.chain.layers.length, 28);
  assert.equal(x.chain.layers.filter((l) => l.spec.group > 1 && l.spec.group === l.spec.cin && l.spec.group === l.spec.cout).length, 9);
  assert.deepEqual(
    x.chain.residuals.map((r) => r.skip),
    ['identity', 'identity', 'identity', 'identity', 'identity'],
  );
  assert.ok(x.chain.residuals.every((r) => r.end - r.start === 3), 'each skip spans expand, depthwise and project');
  assert.equal(x.activations.filter((a) => a !== undefined).length, 19);
  assert.ok(x.activations.every((a) => a === undefined || a.kind === 'relu6'));
  // linear bottlenecks: no activation after any 1×1 conv that narrows the channels
  x.chain.layers.forEach((l, m) => {
    if (l.spec.kh === 1 && l.spec.cout < l.spec.cin) assert.equal(l.activationAfter, false, `layer ${m}`);
  });
  assert.deepEqual(interiorBarriers(x), []);
});

test('VGG: 8 chained convs, barriers at the two max-pools, no skips', async () => {
  const { x } = await fixture('vgg');
  assert.equal(x.chain.layers.length, 8);
  assert.equal(x.chain.residuals.length, 0);
  assert.deepEqual(
    x.chain.layers.map((l, m) => (l.barrierAfter ? m : -1)).filter((m) => m >= 0 && m < 7),
    [1, 4],
  );
  assert.ok(x.notes.some((n) => n.includes('MaxPool')));
  // no candidate block spans a pool
  for (const c of enumerateCandidates(x.chain)) assert.ok(!(c.i <= 1 && c.j >= 3) && !(c.i <= 4 && c.j >= 6), `${c.i}-${c.j}`);
});

test('ViT: only the patch embedding is a conv on the trunk; the transformer blocks are barriers', async () => {
  const { x } = await fixture('vit');
  assert.equal(x.chain.layers.length, 1);
  assert.equal(x.chain.layers[0]!.spec.kh, 4);
  assert.equal(x.chain.residuals.length, 0);
});

interface Compare {
  maxAll: number;
  maxOutside: number;
  scale: number;
}

/**
 * The emitted block's output against the same network with the block's activations and removed convs
 * taken out (removeUnits): what the merged conv must reproduce. Differences are allowed only within the
 * block's border band.
 */
async function compareBlock(name: ModelName, block: BlockChoice): Promise<Compare> {
  const { model, units, x } = await fixture(name);
  const emitted = emitLayerMerge(model, x, [block]);
  const e = emitted.blocks[0]!;
  const removed: Unit[] = [];
  for (let p = block.i + 1; p < block.j; p++) {
    const a = x.activations[p];
    if (a) removed.push(units.find((u) => u.id === a.id)!);
  }
  for (let m = block.i; m < block.j; m++) if (!block.kept.includes(m)) removed.push(units.find((u) => u.id === x.layers[m]!.id)!);
  const reference = removed.length > 0 ? removeUnits(model, removed).model : cloneModel(model);
  addOutputs(reference, [e.replaced]);
  const tapped = cloneModel(emitted.model);
  addOutputs(tapped, [e.tensor]);
  const a = await createSession(encodeModel(reference));
  const b = await createSession(encodeModel(tapped));
  try {
    const feeds = randomFeeds(a.inputs, { batch: 2 }, 7);
    const ra = (await a.run(feeds, [e.replaced]))[e.replaced]!;
    const rb = (await b.run(feeds, [e.tensor]))[e.tensor]!;
    assert.deepEqual(rb.dims, ra.dims);
    const band = stepsBorderBand(blockSteps(x.chain, block.i, block.j, [...block.kept]));
    const [n, c, h, w] = ra.dims as [number, number, number, number];
    const da = ra.data as Float32Array;
    const db = rb.data as Float32Array;
    let maxAll = 0;
    let maxOutside = 0;
    let scale = 0;
    for (let s = 0; s < n * c; s++) {
      for (let y = 0; y < h; y++) {
        for (let z = 0; z < w; z++) {
          const k = (s * h + y) * w + z;
          const d = Math.abs(da[k]! - db[k]!);
          scale = Math.max(scale, Math.abs(da[k]!));
          maxAll = Math.max(maxAll, d);
          if (y >= band.top && y < h - band.bottom && z >= band.left && z < w - band.right) maxOutside = Math.max(maxOutside, d);
        }
      }
    }
    return { maxAll, maxOutside, scale };
  } finally {
    await a.release();
    await b.release();
  }
}

const cases: Array<[ModelName, BlockChoice, string]> = [
  ['resnet20', { i: 1, j: 3, kept: [1, 2] }, 'two 3×3 convs and their skip into one 5×5 (ReLU between removed)'],
  ['resnet20', { i: 15, j: 17, kept: [16] }, 'one conv removed, the other and the skip folded'],
  ['resnet20', { i: 9, j: 13, kept: [9, 10, 12] }, 'three convs over two residual blocks into a 7×7'],
  ['mobilenetv2', { i: 2, j: 4, kept: [2, 3] }, 'a projection and the next expansion (1×1, no activation between)'],
  ['mobilenetv2', { i: 4, j: 6, kept: [4, 5] }, 'a strided depthwise conv and the 1×1 after it (strides compose)'],
  ['mobilenetv2', { i: 12, j: 15, kept: [12, 13, 14] }, 'a whole inverted residual block with its skip'],
  ['mobilenetv2', { i: 22, j: 24, kept: [22, 23] }, 'depthwise then projection: a dense 3×3'],
  ['vgg', { i: 2, j: 5, kept: [2, 3, 4] }, 'three plain convs into a 7×7'],
];

for (const [name, block, what] of cases) {
  test(`${name} (${block.i}, ${block.j}] kept ${block.kept.join(',')}: ${what}; exact outside the border band`, async () => {
    const r = await compareBlock(name, block);
    const tol = 2e-5 * Math.max(1, r.scale);
    assert.ok(r.maxOutside <= tol, `outside the band: ${r.maxOutside} > ${tol}`);
  });
}

test('blocks that pad after their first conv do differ inside the band (the documented border effect)', async () => {
  const r = await compareBlock('resnet20', { i: 1, j: 3, kept: [1, 2] });
  assert.ok(r.maxAll > 1e-3 * r.scale, `expected a border difference, got ${r.maxAll}`);
});

test('emitted models keep the inputs and outputs, load in onnxruntime and run', async () => {
  for (const name of ['resnet20', 'mobilenetv2', 'vgg'] as const) {
    const { model, x } = await fixture(name);
    const cands = enumerateCandidates(x.chain, { maxKernel: 5 });
    // a tiling of the chain with one changed block every few positions
    const blocks: BlockChoice[] = [];
    let at = 0;
    while (at < x.chain.layers.length) {
      const c = cands.find((q) => q.i === at && q.j > at + 1) ?? cands.find((q) => q.i === at)!;
      blocks.push({ i: c.i, j: c.j, kept: c.kept });
      at = c.j;
    }
    const out = emitLayerMerge(model, x, blocks);
    assert.deepEqual(modelSignature(out.model), modelSignature(model));
    const s = await createSession(encodeModel(out.model));
    try {
      const r = await s.run(randomFeeds(s.inputs, { batch: 3 }));
      const logits = r['logits'] as ort.Tensor;
      assert.deepEqual(logits.dims, [3, 10]);
      assert.ok((logits.data as Float32Array).every(Number.isFinite));
    } finally {
      await s.release();
    }
    assert.ok(out.removedNodes > 0, name);
  }
});
