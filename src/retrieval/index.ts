/**
 * Retrieval: distance kernels, the embedding store, the test-leakage filter,
 * Algorithm 1 and the Random/Complete baselines (docs/method.md §1–3).
 * Pure functions work on arrays; the `*Files` functions are thin file wrappers.
 */
export { knn, nearest, holdRows, distanceBlock, exactSqDist, RunningTopK, gatherRows, l2NormalizeRows, type HeldRows, type KnnOptions } from './knn.js';
export { EmbeddingStore, readIdsAndLabels, checkCompatible, checkMetadataMatch, chunkRowsFor, DEFAULT_MEMORY_BUDGET_MIB, type EmbeddingChunk, type StoreOptions } from './store.js';
export { algorithm1, greedySweep, candidatesPerSeed, seedBudgets, type Entries, type Picks } from './algorithm1.js';
export { selectAlgorithm1, searchCandidates, mergeCandidates, sweepCandidates, openSeedAndPool, type CandidateSet, type SeedSet, type Selection, type SelectOptions, type SelectResult, type ClassSummary } from './select.js';
export { classThresholds, leakageFilter, type Threshold, type RemovedRow, type FilterOptions, type FilterResult, type FilterClassSummary } from './filter.js';
export { randomBaseline, completeBaseline, labelCounts, type BaselineClassSummary } from './baselines.js';
export { mulberry32 } from '../core/rng.js';
export { selectFiles, filterFiles, randomBaselineFiles, completeBaselineFiles, writeSelection, readIdSet, parseClassList } from './files.js';
export { openArrowSink, takeRows, sidecarPath, toCsv } from './output.js';
