import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeModel, encodeModel } from '../../service/src/core/onnx/codec.js';
import { encodeNpz } from '../../service/src/core/data/npy.js';
import { CLI, fixtureModel } from '../helpers/paths.js';

let dir = '';
const resnet = () => new Uint8Array(readFileSync(fixtureModel('resnet20')));

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-bad-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function strata(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 1, exactly one line on stderr that names the problem, and no stack trace. */
function assertCleanFailure(r: ReturnType<typeof strata>, pattern: RegExp): void {
  assert.equal(r.status, 1, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n').filter((l) => !/^(loading|evaluating|timing)/.test(l));
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^strata: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function file(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

test('BAD MODEL - a truncated file is named as truncated', () => {
  const bytes = resnet();
  assertCleanFailure(strata('inspect', file('truncated.onnx', bytes.subarray(0, bytes.length >> 1))), /truncated/);
});

test('BAD MODEL - random bytes are not an ONNX model', () => {
  let s = 12345;
  const junk = new Uint8Array(4096).map(() => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s >>> 24;
  });
  assertCleanFailure(strata('inspect', file('random.onnx', junk)), /not an ONNX model|truncated/);
});

test('BAD MODEL - a valid protobuf that is not a ModelProto says what is missing', () => {
  // field 100, wire type 2 (length-delimited): a well-formed protobuf with nothing ONNX in it
  const text = new TextEncoder().encode('hello');
  const proto = new Uint8Array([0xa2, 0x06, text.length, ...text]);
  assertCleanFailure(strata('inspect', file('other.pb', proto)), /not as an ONNX model: missing ir_version, graph, opset_import/);
});

test('BAD MODEL - missing external data names the file it looked for', () => {
  const model = decodeModel(resnet());
  const w = model.graph!.initializer![0]!;
  const length = w.raw_data!.byteLength;
  w.raw_data = new Uint8Array(0);
  w.data_location = 1;
  w.external_data = [
    { key: 'location', value: 'weights.bin' },
    { key: 'offset', value: '0' },
    { key: 'length', value: String(length) },
  ];
  assertCleanFailure(strata('inspect', file('external.onnx', encodeModel(model))), /external file "weights\.bin", which was not found beside the model/);
});

test('BAD MODEL - an unknown operator is listed by name', () => {
  const model = decodeModel(resnet());
  const relu = model.graph!.node!.find((n) => n.op_type === 'Relu')!;
  relu.op_type = 'SuperRelu';
  assertCleanFailure(strata('inspect', file('unknown-op.onnx', encodeModel(model))), /operators strata does not know: SuperRelu \(1×\)/);
});

test('BAD DATA - an npz whose array has the wrong per-sample shape names expected and given', () => {
  const npz = encodeNpz({
    input: { data: new Float32Array(4 * 3 * 28 * 28), dtype: 'float32', shape: [4, 3, 28, 28] },
    labels: { data: new BigInt64Array(4), dtype: 'int64', shape: [4] },
  });
  const r = strata('evaluate', fixtureModel('resnet20'), '--data', file('wrong-shape.npz', npz), '--quiet');
  assertCleanFailure(r, /input/);
  assert.match(r.stderr, /3, ?28, ?28|3x28x28/);
  assert.match(r.stderr, /1, ?28, ?28|1x28x28/);
});

test('BAD DATA - an npz whose array has the wrong dtype names expected and given', () => {
  const npz = encodeNpz({ input: { data: new Float64Array(2 * 784), dtype: 'float64', shape: [2, 1, 28, 28] } });
  const r = strata('evaluate', fixtureModel('resnet20'), '--data', file('wrong-dtype.npz', npz), '--quiet');
  assertCleanFailure(r, /float32/);
  assert.match(r.stderr, /float64|<f8/);
});

test('BAD CALL - a dynamic shape with no binding says how to bind it', () => {
  const model = decodeModel(resnet());
  const dims = model.graph!.input![0]!.type!.tensor_type!.shape!.dim!;
  dims[2] = { dim_param: 'height' };
  const r = strata('inspect', file('dynamic.onnx', encodeModel(model)));
  assertCleanFailure(r, /--shape input=/);
  assert.equal(strata('inspect', file('dynamic2.onnx', encodeModel(model)), '--shape', 'input=1x1x28x28').status, 0);
});

test('a missing file and an unknown provider are one-line errors', () => {
  assertCleanFailure(strata('inspect', join(dir, 'nope.onnx')), /not found/);
  assertCleanFailure(strata('latency', fixtureModel('resnet20'), '--provider', 'quantum'), /--provider: "quantum" is not a provider/);
});
