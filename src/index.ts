export * from './artifact';
export * from './registry';
export * from './registry-storage';
export * from './runtime-image';
export * from './workflow';
export * from './workflow-step';
export * from './webhook';
export * from './csi-driver';
