/**
 * The one place strata creates onnxruntime sessions, so provider selection, threading and the
 * translation of onnxruntime's errors into domain errors happen the same way everywhere.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, InvalidModelError, StrataError, UnsupportedModelError } from '../core/errors.js';

export type Provider = 'cpu' | 'cuda' | 'tensorrt' | 'webgpu';
export const PROVIDERS: readonly Provider[] = ['cpu', 'cuda', 'tensorrt', 'webgpu'];

export type Optimization = 'disabled' | 'basic' | 'extended' | 'all';

export interface SessionOptions {
  provider?: Provider;
  /** Intra-op threads; onnxruntime picks one per physical core when absent. */
  threads?: number;
  optimization?: Optimization;
  /** Turns on onnxruntime's profiler; the trace is written as `<prefix>_<timestamp>.json` by endProfiling(). */
  profilePrefix?: string;
}

/** A tensor input or output as the loaded model declares it; dims are numbers or symbolic names. */
export interface TensorInfo {
  name: string;
  /** onnxruntime's element type name: float32, int64, … */
  dtype: string;
  dims: (number | string)[];
}

export type Feeds = Record<string, ort.Tensor>;

export interface Session {
  readonly ort: ort.InferenceSession;
  readonly provider: Provider;
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** All outputs, or only `outputNames`. */
  run(feeds: Feeds, outputNames?: readonly string[]): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

const INSTALL_HINT =
  'install the CUDA 12 build of onnxruntime-node with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` ' +
  '(it downloads the CUDA and TensorRT provider libraries; the host also needs CUDA 12 and cuDNN 9)';

function hintFor(provider: Provider): string {
  if (provider === 'webgpu') {
    return 'the WebGPU provider ships with onnxruntime-node but needs a GPU adapter: on Linux a Vulkan driver and loader (libvulkan1)';
  }
  return INSTALL_HINT;
}

/** Where onnxruntime-node keeps its native libraries; optional provider libraries are installed beside them. */
function bindingFolder(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    return join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

function providerLibraryPresent(provider: string): boolean {
  const folder = bindingFolder();
  if (!folder) return false;
  const file =
    process.platform === 'win32'
      ? `onnxruntime_providers_${provider}.dll`
      : process.platform === 'darwin'
        ? `libonnxruntime_providers_${provider}.dylib`
        : `libonnxruntime_providers_${provider}.so`;
  return existsSync(join(folder, file));
}

/**
 * Providers this onnxruntime-node can use without a further install: the bundled ones, and the
 * unbundled ones (CUDA, TensorRT) whose libraries the cuda12 install put beside the binding.
 * Being listed does not promise working hardware: WebGPU still needs an adapter.
 */
export function availableProviders(): Provider[] {
  return ort
    .listSupportedBackends()
    .filter((b) => b.bundled || providerLibraryPresent(b.name))
    .map((b) => b.name)
    .filter((n): n is Provider => (PROVIDERS as readonly string[]).includes(n));
}

/** onnxruntime's first message line, without the source location and failed condition its checks prepend. */
function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = (text.split('\n').find((l) => l.trim() !== '') ?? text).trim();
  const enforced = /^\S+\.(?:cc|cpp|h):\d+ .*? was false\. (.+)$/.exec(line);
  return (enforced?.[1] ?? line).replace(/\.$/, '');
}

function unavailable(provider: string, reason: string): StrataError {
  const listed = ort.listSupportedBackends().map((b) => `${b.name}${b.bundled ? '' : ' (not bundled)'}`);
  const usable = availableProviders();
  return new StrataError(
    'RUNTIME_UNAVAILABLE',
    `execution provider '${provider}' is not available: ${reason}. ` +
      `This onnxruntime-node ${ort.env.versions.node ?? ort.env.versions.common} lists ${listed.join(', ')}; installed: ${usable.join(', ')}. ` +
      `To get '${provider}': ${PROVIDERS.includes(provider as Provider) ? hintFor(provider as Provider) : `use one of ${PROVIDERS.join(', ')}`}.`,
    { provider, listed, usable },
  );
}

function toOrtOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  const out: ort.InferenceSession.SessionOptions = {
    executionProviders: [options.provider ?? 'cpu'],
    graphOptimizationLevel: options.optimization ?? 'all',
    // onnxruntime's warnings (e.g. one line per initializer listed as a graph input) would bury
    // strata's own output; its errors still surface as exceptions strata reports.
    logSeverityLevel: 3,
  };
  if (options.threads !== undefined) out.intraOpNumThreads = options.threads;
  if (options.profilePrefix !== undefined) {
    out.enableProfiling = true;
    out.profileFilePrefix = options.profilePrefix;
  }
  return out;
}

class OrtSession implements Session {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];

  constructor(
    readonly ort: ort.InferenceSession,
    readonly provider: Provider,
  ) {
    const info = (metadata: readonly ort.InferenceSession.ValueMetadata[]): TensorInfo[] =>
      metadata.map((m) => {
        if (!m.isTensor) {
          throw new UnsupportedModelError(`model value '${m.name}' is not a tensor (sequence or map); strata feeds and reads tensors only`);
        }
        return { name: m.name, dtype: m.type, dims: [...m.shape] };
      });
    this.inputs = info(this.ort.inputMetadata);
    this.outputs = info(this.ort.outputMetadata);
  }

  async run(feeds: Feeds, outputNames?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const result = outputNames ? await this.ort.run(feeds, [...outputNames]) : await this.ort.run(feeds);
    return result as Record<string, ort.Tensor>;
  }

  release(): Promise<void> {
    return this.ort.release();
  }
}

export async function createSession(modelBytes: Uint8Array, options: SessionOptions = {}): Promise<Session> {
  const provider = options.provider ?? 'cpu';
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new InvalidArgumentError('provider', `unknown execution provider '${String(provider)}'; choose one of ${PROVIDERS.join(', ')}`);
  }
  if (options.threads !== undefined && (!Number.isSafeInteger(options.threads) || options.threads < 0)) {
    throw new InvalidArgumentError('threads', `must be a non-negative integer (0 lets onnxruntime choose), got ${options.threads}`);
  }
  const backend = ort.listSupportedBackends().find((b) => b.name === provider);
  if (!backend) throw unavailable(provider, 'this build of onnxruntime-node does not include it');
  // Checked up front so the user sees one clear error instead of onnxruntime's load failure log first.
  if (!backend.bundled && !providerLibraryPresent(provider)) {
    throw unavailable(provider, 'its provider library is not installed');
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelBytes, toOrtOptions(options));
  } catch (err) {
    if (provider !== 'cpu') {
      // onnxruntime reports a missing provider library and a broken model the same way (an Error with
      // a message); if the CPU provider takes the model, the provider was the problem.
      let cpuTakesIt = false;
      try {
        await (await ort.InferenceSession.create(modelBytes, { executionProviders: ['cpu'] })).release();
        cpuTakesIt = true;
      } catch {
        cpuTakesIt = false;
      }
      if (cpuTakesIt) throw unavailable(provider, firstLine(err));
    }
    throw new InvalidModelError(`onnxruntime cannot load the model: ${firstLine(err)}`, { provider });
  }
  return new OrtSession(session, provider);
}
