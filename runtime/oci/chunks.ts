/**
 * Bytes per file read, per gzip or gunzip output chunk and per tar chunk on the data path. Each chunk is a
 * trip through libuv's thread pool, and on a VM the wake-up latency of that trip, not the work, dominates
 * small chunks: with Node's 64 KiB reads and 16 KiB zlib chunks, a pull of 10,000 small files spent a
 * fifth of its time waiting for them (see the README's benchmark).
 */
export const STREAM_CHUNK = 256 * 1024;
