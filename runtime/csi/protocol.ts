import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

/**
 * The part of the CSI v1 protocol this plugin speaks (Identity and Node
 * services), as a protobuf descriptor of our own: message names and field
 * numbers follow the CSI specification (csi.proto, package csi.v1), so any
 * CSI client (kubelet, node-driver-registrar, csi-sanity) understands it.
 */
const descriptor = {
  nested: {
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

function method(service: string, name: string, request: string, response: string): grpc.MethodDefinition<object, object> {
  const requestType = root.lookupType(`csi.v1.${request}`);
  const responseType = root.lookupType(`csi.v1.${response}`);
  const options = { longs: Number, enums: String, defaults: true, oneofs: true, keepCase: true };
  return {
    path: `/csi.v1.${service}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: object) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
    requestDeserialize: (bytes: Buffer) => requestType.toObject(requestType.decode(bytes), options),
    responseSerialize: (value: object) => Buffer.from(responseType.encode(responseType.fromObject(value)).finish()),
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), options),
  };
}

const rpc = (service: string, name: string) => method(service, name, `${name}Request`, `${name}Response`);

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

/**
 * Only ControllerGetCapabilities, answering with no capabilities: the plugin
 * does not advertise a controller, but clients such as csi-sanity ask.
 */
export const ControllerService: grpc.ServiceDefinition = {
  ControllerGetCapabilities: rpc('Controller', 'ControllerGetCapabilities'),
};

/** A gRPC error with a CSI status code and a message that says what to do. */
export class CsiError extends Error {
  constructor(public readonly code: grpc.status, message: string) {
    super(message);
    this.name = 'CsiError';
  }
}
