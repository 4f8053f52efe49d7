import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, fixtureModel, type ModelName } from '../helpers/paths.js';

interface UnitJson {
  id: string;
  kind: string;
  removable: boolean;
  parent?: string;
  skip?: string;
  norm?: string;
  activation?: string;
  conv?: { depthwise: boolean; inChannels: number; outChannels: number; stride: number[] };
  output: string;
  parameters: number;
  macs: number | null;
}

function inspect(name: ModelName): { units: UnitJson[]; parameters: number; opset: number } {
  const r = spawnSync(process.execPath, [CLI, 'inspect', fixtureModel(name), '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { units: UnitJson[]; parameters: number; opset: number };
}

const of = (units: UnitJson[], kind: string) => units.filter((u) => u.kind === kind);

// The expected counts follow from the architectures in tools/train_reference_models.py.

test('ResNet-20: 9 residual blocks, the 7 with identity skips removable, the 2 downsampling ones not', () => {
  const { units, opset } = inspect('resnet20');
  assert.equal(opset, 17);
  const res = of(units, 'residual');
  assert.equal(res.length, 9);
  assert.equal(res.filter((u) => u.removable).length, 7);
  assert.deepEqual(res.filter((u) => !u.removable).map((u) => u.skip), ['projection', 'projection']);
  // stem + 2 per block + 2 projection shortcuts
  assert.equal(of(units, 'conv').length, 1 + 18 + 2);
  assert.ok(of(units, 'activation').every((a) => a.activation === 'relu'));
  // every block's convs are its children
  for (const r of res) assert.ok(units.filter((u) => u.parent === r.id && u.kind === 'conv').length >= 2);
});

test('MobileNetV2: every inverted residual with stride 1 and equal channels has a removable identity skip', () => {
  const settings: [number, number, number, number][] = [
    [1, 16, 1, 2],
    [6, 24, 2, 1],
    [6, 32, 3, 2],
    [6, 64, 3, 1],
  ];
  let cin = 32;
  let identity = 0;
  let blocks = 0;
  for (const [, c, n, s] of settings) {
    for (let i = 0; i < n; i++) {
      if ((i === 0 ? s : 1) === 1 && cin === c) identity++;
      blocks++;
      cin = c;
    }
  }
  const { units } = inspect('mobilenetv2');
  const res = of(units, 'residual');
  assert.equal(res.length, identity);
  assert.ok(res.every((u) => u.removable && u.skip === 'identity'));
  const convs = of(units, 'conv');
  assert.equal(convs.filter((c) => c.conv?.depthwise).length, blocks);
  assert.ok(of(units, 'activation').every((a) => a.activation === 'relu6'));
});

test('VGG: a plain chain — no residual blocks, every conv found, same-shape convs removable', () => {
  const stages = [[24, 24], [48, 48, 48], [96, 96, 96]];
  const { units } = inspect('vgg');
  assert.equal(of(units, 'residual').length, 0);
  const convs = of(units, 'conv');
  assert.equal(convs.length, stages.flat().length);
  // a conv keeping its channel count (stride 1, same padding) can be replaced by the identity
  const sameShape = stages.flat().filter((c, i, all) => i > 0 && all[i - 1] === c).length;
  assert.equal(convs.filter((c) => c.removable).length, sameShape);
});

test('ViT: every pre-norm transformer block found and removable, each with attention and MLP halves', () => {
  const { units } = inspect('vit');
  const blocks = of(units, 'transformer');
  assert.equal(blocks.length, 6);
  assert.ok(blocks.every((b) => b.removable && b.norm === 'pre'));
  for (const b of blocks) {
    const halves = units.filter((u) => u.parent === b.id).map((u) => u.kind).sort();
    assert.deepEqual(halves, ['attention', 'mlp']);
  }
  assert.equal(of(units, 'activation').filter((a) => a.activation === 'gelu').length, 6);
});
