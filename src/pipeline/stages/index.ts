/**
 * The stages of a DCD experiment, one file each. Every stage is a {@link StageSpec}: its
 * config slice (what changes its output), its inputs, and `run`, which calls one of the
 * other areas' libraries and writes its artifacts into its own folder.
 */
export { dataStage } from './data.js';
export { trainOriginal, originalCheckpoint } from './original.js';
export { failuresStage } from './failures.js';
export { demoBackbone } from './backbone.js';
export { embedStage } from './embed.js';
export { filterStage } from './filter.js';
export { selectStage } from './select.js';
export { randomStage, completeStage } from './baseline.js';
export { trainStage } from './train.js';
export { evaluateStage } from './evaluate.js';
export { galleryStage } from './gallery.js';
export { retentionStage } from './retention.js';
export { reportStage, type RowRef } from './report.js';
export { sslBackboneStage, sslPretrain } from './ssl-backbone.js';
export { slicesStage, mapStage, slicesBackbone, sliceBudgetOf, type SlicesState } from './slices.js';
