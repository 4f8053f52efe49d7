/**
 * The API's enums. Their values inside are the domain's own strings ('queued', 'latency-ms', …),
 * so records map to GraphQL without translation tables.
 */
import { registerEnumType } from 'type-graphql';

export enum JobStatusEnum {
  QUEUED = 'queued',
  RUNNING = 'running',
  SUCCEEDED = 'succeeded',
  FAILED = 'failed',
  CANCELLED = 'cancelled',
}
registerEnumType(JobStatusEnum, { name: 'JobStatus' });

export enum JobKindEnum {
  STRUCTURE = 'structure',
  SIMILARITY = 'similarity',
  SEGMENTS = 'segments',
  TABLES = 'tables',
  PLAN = 'plan',
  TRADEOFF = 'tradeoff',
  COMPRESS = 'compress',
}
registerEnumType(JobKindEnum, { name: 'JobKind' });

/** Planning methods this service has; each new method is a new value here. */
export enum PlanMethodEnum {
  SGLP = 'sglp',
  LAYERMERGE = 'layermerge',
}
registerEnumType(PlanMethodEnum, {
  name: 'PlanMethod',
  valuesConfig: {
    SGLP: { description: 'segments by CKA similarity (Fisher optimal segmentation), least important layers removed inside each' },
    LAYERMERGE: {
      description:
        'activations and convolutions removed so consecutive convolutions merge into one, chosen exactly by dynamic programming over measured latency and importance tables; latency budgets only',
    },
  },
});

export enum LayerMergeVariantEnum {
  LAYERMERGE = 'layermerge',
  LAYER_ONLY = 'layer-only',
  MERGE_ONLY = 'merge-only',
}
registerEnumType(LayerMergeVariantEnum, {
  name: 'LayerMergeVariant',
  valuesConfig: {
    LAYERMERGE: { description: 'remove convolutions and activations, and merge what remains' },
    LAYER_ONLY: { description: 'remove convolutions and activations only: every block keeps at most one convolution' },
    MERGE_ONLY: { description: 'remove activations and merge: every block keeps all its convolutions' },
  },
});

export enum CkaEstimatorEnum {
  UNBIASED = 'unbiased',
  BIASED = 'biased',
}
registerEnumType(CkaEstimatorEnum, { name: 'CkaEstimator', description: 'minibatch HSIC estimator behind CKA' });

export enum SegmentCostEnum {
  FISHER = 'fisher',
  DISSIMILARITY = 'dissimilarity',
}
registerEnumType(SegmentCostEnum, { name: 'SegmentCost' });

// GradNorm needs gradients, which strata does not compute yet: the API offers only the measures it
// can run, and gains GRADNORM when that lands (core/importance/measures.ts keeps its place).
export enum ImportanceMeasureEnum {
  ABLATION = 'ablation',
  BLOCK_INFLUENCE = 'block-influence',
  ANGULAR = 'angular',
}
registerEnumType(ImportanceMeasureEnum, { name: 'ImportanceMeasure' });

export enum UnitKindEnum {
  RESIDUAL = 'residual',
  TRANSFORMER = 'transformer',
  ATTENTION = 'attention',
  MLP = 'mlp',
  CONV = 'conv',
  ACTIVATION = 'activation',
  LINEAR = 'linear',
}
registerEnumType(UnitKindEnum, { name: 'UnitKind' });

export enum BudgetKindEnum {
  LATENCY_FRACTION = 'latency-fraction',
  LATENCY_MS = 'latency-ms',
  REMOVE = 'remove',
  FRACTION = 'fraction',
}
registerEnumType(BudgetKindEnum, { name: 'BudgetKind' });
