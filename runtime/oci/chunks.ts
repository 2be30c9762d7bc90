/**
 * Bytes per file read, per gzip or gunzip output chunk and per tar chunk on the data path. Each chunk is a
 * trip through libuv's thread pool, and on a VM the wake-up latency of that trip, not the work, dominates
 * small chunks: with Node's 64 KiB reads and 16 KiB zlib chunks, a pull of 10,000 small files spent a
 * fifth of its time waiting for them (see the README's benchmark).
 */
export const STREAM_CHUNK = 256 * 1024;

/**
 * Bytes the stages that hand work to the thread pool (gzip, gunzip, file writes) may hold before they
 * push back, so that the main thread can run ahead while they work. Node's 16 KiB let gunzip sit idle
 * while the extractor wrote files. The hashing stages keep 16 KiB: more was no faster than the noise
 * and cost the 1 GiB pull 6 MiB of peak RSS.
 */
export const STREAM_AHEAD = 1024 * 1024;

/**
 * Bytes the file downloads of one pull may hold ahead of their writes, split between those that run at
 * once. The writes go through the thread pool one at a time; with 1 MiB ahead the socket often waited
 * for them, and a 1 GiB pull took 1.65 s where oras took 1.4 s; with 8 MiB, 1.25–1.4 s.
 */
export const DOWNLOAD_AHEAD = 8 * 1024 * 1024;
