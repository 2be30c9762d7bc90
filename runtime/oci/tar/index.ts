/**
 * A streaming tar codec for ORAS directory layers, built on Node built-ins only:
 * format.ts (headers and records), write.ts (directory to archive), read.ts (archive to entries) and
 * extract.ts (entries to a directory, and the rules that keep them inside it).
 */
export { paxRecord, parsePaxRecords, tarHeader } from './format';
export type { TarHeader } from './format';
export { packDirectory, tarChunks, tarDirectory } from './write';
export { extractTar } from './extract';
export type { ExtractOptions, ExtractResult } from './extract';
