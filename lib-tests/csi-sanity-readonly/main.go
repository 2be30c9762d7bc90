// csi-sanity for a read-only driver: the specs of csi-test v5.4.0's sanity
// package, unchanged, with one difference. csi-sanity creates and publishes
// every volume with the access mode SINGLE_NODE_WRITER (hard-coded in
// pkg/sanity/controller.go and node.go), which a read-only driver must refuse.
// A client interceptor asks for MULTI_NODE_READER_ONLY (ReadOnlyMany) instead,
// so that every spec that creates or publishes a volume runs against the
// read-only driver as Kubernetes would call it. Other modes pass unchanged.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

var rewritten atomic.Int64

func readOnly(capability *csi.VolumeCapability) {
	if mode := capability.GetAccessMode(); mode != nil && mode.Mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		mode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
		rewritten.Add(1)
	}
}

// asReader returns a copy of the request whose writer access modes are ReadOnlyMany.
func asReader(request any) any {
	message, ok := request.(proto.Message)
	if !ok {
		return request
	}
	copied := proto.Clone(message)
	switch r := copied.(type) {
	case *csi.CreateVolumeRequest:
		for _, c := range r.VolumeCapabilities {
			readOnly(c)
		}
	case *csi.ValidateVolumeCapabilitiesRequest:
		for _, c := range r.VolumeCapabilities {
			readOnly(c)
		}
	case *csi.NodePublishVolumeRequest:
		readOnly(r.VolumeCapability)
	case *csi.NodeStageVolumeRequest:
		readOnly(r.VolumeCapability)
	case *csi.ControllerPublishVolumeRequest:
		readOnly(r.VolumeCapability)
	default:
		return request
	}
	return copied
}

func interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, asReader(req), reply, cc, opts...)
}

type result struct{ failed bool }

func (r *result) Fail() { r.failed = true }

func main() {
	config := sanity.NewTestConfig()
	flag.StringVar(&config.Address, "csi.endpoint", "", "CSI endpoint")
	flag.StringVar(&config.TargetPath, "csi.mountdir", config.TargetPath, "mount point for NodePublish")
	flag.StringVar(&config.StagingPath, "csi.stagingdir", config.StagingPath, "mount point for NodeStage")
	flag.StringVar(&config.TestVolumeParametersFile, "csi.testvolumeparameters", "", "YAML file of volume parameters for provisioned volumes")
	flag.StringVar(&config.SecretsFile, "csi.secrets", "", "CSI secrets file")
	flag.Parse()
	if config.Address == "" {
		fmt.Println("--csi.endpoint must be provided with a CSI endpoint")
		os.Exit(1)
	}
	config.DialOptions = append(config.DialOptions, grpc.WithChainUnaryInterceptor(interceptor))
	config.ControllerDialOptions = append(config.ControllerDialOptions, grpc.WithChainUnaryInterceptor(interceptor))
	r := &result{}
	sanity.Test(r, config)
	fmt.Printf("csi-sanity-readonly: %d writer access modes asked as MULTI_NODE_READER_ONLY\n", rewritten.Load())
	if r.failed {
		os.Exit(1)
	}
}
