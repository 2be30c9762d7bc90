import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import type { Reporter } from '../oci/progress';

/**
 * The protocols this plugin speaks, as a protobuf descriptor of our own:
 * - the part of CSI v1 it serves (Identity, Controller and Node): message names and field
 *   numbers follow the CSI specification (csi.proto, package csi.v1), so any
 *   CSI client (kubelet, node-driver-registrar, csi-sanity) understands it;
 * - the kubelet's plugin registration (k8s.io/kubelet
 *   pkg/apis/pluginregistration/v1/api.proto, whose package is
 *   `pluginregistration`), which the plugin serves instead of node-driver-registrar.
 */
const descriptor = {
  nested: {
    pluginregistration: {
      nested: {
        InfoRequest: { fields: {} },
        PluginInfo: {
          fields: {
            type: { type: 'string', id: 1 },
            name: { type: 'string', id: 2 },
            endpoint: { type: 'string', id: 3 },
            supported_versions: { rule: 'repeated', type: 'string', id: 4 },
          },
        },
        RegistrationStatus: { fields: { plugin_registered: { type: 'bool', id: 1 }, error: { type: 'string', id: 2 } } },
        RegistrationStatusResponse: { fields: {} },
      },
    },
    google: { nested: { protobuf: { nested: { BoolValue: { fields: { value: { type: 'bool', id: 1 } } } } } } },
    csi: {
      nested: {
        v1: {
          nested: {
            GetPluginInfoRequest: { fields: {} },
            GetPluginInfoResponse: {
              fields: {
                name: { type: 'string', id: 1 },
                vendor_version: { type: 'string', id: 2 },
                manifest: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            GetPluginCapabilitiesRequest: { fields: {} },
            GetPluginCapabilitiesResponse: { fields: { capabilities: { rule: 'repeated', type: 'PluginCapability', id: 1 } } },
            PluginCapability: {
              oneofs: { type: { oneof: ['service'] } },
              fields: { service: { type: 'Service', id: 1 } },
              nested: {
                Service: {
                  fields: { type: { type: 'Type', id: 1 } },
                  nested: { Type: { values: { UNKNOWN: 0, CONTROLLER_SERVICE: 1, VOLUME_ACCESSIBILITY_CONSTRAINTS: 2 } } },
                },
              },
            },
            ProbeRequest: { fields: {} },
            ProbeResponse: { fields: { ready: { type: 'google.protobuf.BoolValue', id: 1 } } },
            VolumeCapability: {
              oneofs: { access_type: { oneof: ['block', 'mount'] } },
              fields: {
                block: { type: 'BlockVolume', id: 1 },
                mount: { type: 'MountVolume', id: 2 },
                access_mode: { type: 'AccessMode', id: 3 },
              },
              nested: {
                BlockVolume: { fields: {} },
                MountVolume: {
                  fields: {
                    fs_type: { type: 'string', id: 1 },
                    mount_flags: { rule: 'repeated', type: 'string', id: 2 },
                    volume_mount_group: { type: 'string', id: 3 },
                  },
                },
                AccessMode: {
                  fields: { mode: { type: 'Mode', id: 1 } },
                  nested: {
                    Mode: {
                      values: {
                        UNKNOWN: 0,
                        SINGLE_NODE_WRITER: 1,
                        SINGLE_NODE_READER_ONLY: 2,
                        MULTI_NODE_READER_ONLY: 3,
                        MULTI_NODE_SINGLE_WRITER: 4,
                        MULTI_NODE_MULTI_WRITER: 5,
                        SINGLE_NODE_SINGLE_WRITER: 6,
                        SINGLE_NODE_MULTI_WRITER: 7,
                      },
                    },
                  },
                },
              },
            },
            NodePublishVolumeRequest: {
              fields: {
                volume_id: { type: 'string', id: 1 },
                publish_context: { keyType: 'string', type: 'string', id: 2 },
                staging_target_path: { type: 'string', id: 3 },
                target_path: { type: 'string', id: 4 },
                volume_capability: { type: 'VolumeCapability', id: 5 },
                readonly: { type: 'bool', id: 6 },
                secrets: { keyType: 'string', type: 'string', id: 7 },
                volume_context: { keyType: 'string', type: 'string', id: 8 },
              },
            },
            NodePublishVolumeResponse: { fields: {} },
            NodeUnpublishVolumeRequest: { fields: { volume_id: { type: 'string', id: 1 }, target_path: { type: 'string', id: 2 } } },
            NodeUnpublishVolumeResponse: { fields: {} },
            NodeGetCapabilitiesRequest: { fields: {} },
            NodeGetCapabilitiesResponse: { fields: { capabilities: { rule: 'repeated', type: 'NodeServiceCapability', id: 1 } } },
            NodeServiceCapability: {
              oneofs: { type: { oneof: ['rpc'] } },
              fields: { rpc: { type: 'RPC', id: 1 } },
              nested: { RPC: { fields: { type: { type: 'Type', id: 1 } }, nested: { Type: { values: { UNKNOWN: 0, STAGE_UNSTAGE_VOLUME: 1, GET_VOLUME_STATS: 2 } } } } },
            },
            CapacityRange: { fields: { required_bytes: { type: 'int64', id: 1 }, limit_bytes: { type: 'int64', id: 2 } } },
            VolumeContentSource: {
              oneofs: { type: { oneof: ['snapshot', 'volume'] } },
              fields: { snapshot: { type: 'SnapshotSource', id: 1 }, volume: { type: 'VolumeSource', id: 2 } },
              nested: { SnapshotSource: { fields: { snapshot_id: { type: 'string', id: 1 } } }, VolumeSource: { fields: { volume_id: { type: 'string', id: 1 } } } },
            },
            Volume: {
              fields: {
                capacity_bytes: { type: 'int64', id: 1 },
                volume_id: { type: 'string', id: 2 },
                volume_context: { keyType: 'string', type: 'string', id: 3 },
                content_source: { type: 'VolumeContentSource', id: 4 },
              },
            },
            CreateVolumeRequest: {
              fields: {
                name: { type: 'string', id: 1 },
                capacity_range: { type: 'CapacityRange', id: 2 },
                volume_capabilities: { rule: 'repeated', type: 'VolumeCapability', id: 3 },
                parameters: { keyType: 'string', type: 'string', id: 4 },
                secrets: { keyType: 'string', type: 'string', id: 5 },
                volume_content_source: { type: 'VolumeContentSource', id: 6 },
              },
            },
            CreateVolumeResponse: { fields: { volume: { type: 'Volume', id: 1 } } },
            DeleteVolumeRequest: { fields: { volume_id: { type: 'string', id: 1 }, secrets: { keyType: 'string', type: 'string', id: 2 } } },
            DeleteVolumeResponse: { fields: {} },
            ValidateVolumeCapabilitiesRequest: {
              fields: {
                volume_id: { type: 'string', id: 1 },
                volume_context: { keyType: 'string', type: 'string', id: 2 },
                volume_capabilities: { rule: 'repeated', type: 'VolumeCapability', id: 3 },
                parameters: { keyType: 'string', type: 'string', id: 4 },
                secrets: { keyType: 'string', type: 'string', id: 5 },
              },
            },
            ValidateVolumeCapabilitiesResponse: {
              fields: { confirmed: { type: 'Confirmed', id: 1 }, message: { type: 'string', id: 2 } },
              nested: {
                Confirmed: {
                  fields: {
                    volume_context: { keyType: 'string', type: 'string', id: 1 },
                    volume_capabilities: { rule: 'repeated', type: 'VolumeCapability', id: 2 },
                    parameters: { keyType: 'string', type: 'string', id: 3 },
                  },
                },
              },
            },
            ControllerGetCapabilitiesRequest: { fields: {} },
            ControllerGetCapabilitiesResponse: { fields: { capabilities: { rule: 'repeated', type: 'ControllerServiceCapability', id: 1 } } },
            ControllerServiceCapability: {
              oneofs: { type: { oneof: ['rpc'] } },
              fields: { rpc: { type: 'RPC', id: 1 } },
              nested: { RPC: { fields: { type: { type: 'Type', id: 1 } }, nested: { Type: { values: { UNKNOWN: 0, CREATE_DELETE_VOLUME: 1 } } } } },
            },
            NodeGetVolumeStatsRequest: {
              fields: { volume_id: { type: 'string', id: 1 }, volume_path: { type: 'string', id: 2 }, staging_target_path: { type: 'string', id: 3 } },
            },
            NodeGetVolumeStatsResponse: { fields: { usage: { rule: 'repeated', type: 'VolumeUsage', id: 1 } } },
            VolumeUsage: {
              fields: {
                available: { type: 'int64', id: 1 },
                total: { type: 'int64', id: 2 },
                used: { type: 'int64', id: 3 },
                unit: { type: 'Unit', id: 4 },
              },
              nested: { Unit: { values: { UNKNOWN: 0, BYTES: 1, INODES: 2 } } },
            },
            NodeGetInfoRequest: { fields: {} },
            NodeGetInfoResponse: {
              fields: {
                node_id: { type: 'string', id: 1 },
                max_volumes_per_node: { type: 'int64', id: 2 },
                accessible_topology: { type: 'Topology', id: 3 },
              },
            },
            Topology: { fields: { segments: { keyType: 'string', type: 'string', id: 1 } } },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(descriptor);

function method(pkg: string, service: string, name: string, request: string, response: string): grpc.MethodDefinition<object, object> {
  const requestType = root.lookupType(`${pkg}.${request}`);
  const responseType = root.lookupType(`${pkg}.${response}`);
  const options = { longs: Number, enums: String, defaults: true, oneofs: true, keepCase: true };
  return {
    path: `/${pkg}.${service}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: object) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
    requestDeserialize: (bytes: Buffer) => requestType.toObject(requestType.decode(bytes), options),
    responseSerialize: (value: object) => Buffer.from(responseType.encode(responseType.fromObject(value)).finish()),
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), options),
  };
}

const rpc = (service: string, name: string) => method('csi.v1', service, name, `${name}Request`, `${name}Response`);

export const IdentityService: grpc.ServiceDefinition = {
  GetPluginInfo: rpc('Identity', 'GetPluginInfo'),
  GetPluginCapabilities: rpc('Identity', 'GetPluginCapabilities'),
  Probe: rpc('Identity', 'Probe'),
};

export const NodeService: grpc.ServiceDefinition = {
  NodePublishVolume: rpc('Node', 'NodePublishVolume'),
  NodeUnpublishVolume: rpc('Node', 'NodeUnpublishVolume'),
  NodeGetCapabilities: rpc('Node', 'NodeGetCapabilities'),
  NodeGetInfo: rpc('Node', 'NodeGetInfo'),
  NodeGetVolumeStats: rpc('Node', 'NodeGetVolumeStats'),
};

/** The part of the Controller service a read-only artifact volume needs: create, delete and validate; nothing is attached. */
export const ControllerService: grpc.ServiceDefinition = {
  CreateVolume: rpc('Controller', 'CreateVolume'),
  DeleteVolume: rpc('Controller', 'DeleteVolume'),
  ValidateVolumeCapabilities: rpc('Controller', 'ValidateVolumeCapabilities'),
  ControllerGetCapabilities: rpc('Controller', 'ControllerGetCapabilities'),
};

/** The kubelet's plugin registration service, served on `<plugins_registry>/<driver>-reg.sock`. */
export const RegistrationService: grpc.ServiceDefinition = {
  GetInfo: method('pluginregistration', 'Registration', 'GetInfo', 'InfoRequest', 'PluginInfo'),
  NotifyRegistrationStatus: method('pluginregistration', 'Registration', 'NotifyRegistrationStatus', 'RegistrationStatus', 'RegistrationStatusResponse'),
};

/** A gRPC error with a CSI status code and a message that says what to do. */
export class CsiError extends Error {
  constructor(public readonly code: grpc.status, message: string) {
    super(message);
    this.name = 'CsiError';
  }
}

/** Volume context keys that carry credentials (the kubelet's service account tokens, with CSIDriver tokenRequests). */
const SECRET_CONTEXT_KEYS = new Set(['csi.storage.k8s.io/serviceAccount.tokens']);

/**
 * What a call log shows of a request: the volume's name, id, path,
 * attributes and parameters; never its secrets (as protosanitizer strips them).
 */
function logFields(request: any): Record<string, unknown> {
  const nonEmpty = (map: Record<string, string> | undefined) => (map && Object.keys(map).length > 0
    ? Object.fromEntries(Object.entries(map).filter(([key]) => !SECRET_CONTEXT_KEYS.has(key)))
    : undefined);
  return {
    name: request?.name || undefined,
    volumeId: request?.volume_id || undefined,
    target: request?.target_path || request?.volume_path || undefined,
    context: nonEmpty(request?.volume_context),
    parameters: nonEmpty(request?.parameters),
  };
}

export interface CallLog {
  readonly reporter: Reporter;
  /** Log failures only (Probe: the livenessprobe calls it every few seconds). */
  readonly errorsOnly?: boolean;
}

/** A unary handler that maps thrown CsiErrors to their status codes and, given `log`, logs each call. */
export function unary(work: (request: any) => Promise<object> | object, log?: CallLog): grpc.handleUnaryCall<any, any> {
  return (call, callback) => {
    const started = performance.now();
    const done = (code: grpc.status, message?: string) => {
      if (!log || (log.errorsOnly && code === grpc.status.OK)) return;
      log.reporter.event('csi-call', {
        method: call.getPath().split('/').pop(), ...logFields(call.request), code: grpc.status[code], ms: Math.round((performance.now() - started) * 100) / 100, message,
      });
    };
    Promise.resolve().then(() => work(call.request)).then(
      (response) => {
        done(grpc.status.OK);
        callback(null, response);
      },
      (err: Error) => {
        const code = err instanceof CsiError ? err.code : grpc.status.INTERNAL;
        done(code, err.message);
        callback({ code, details: err.message });
      },
    );
  };
}
