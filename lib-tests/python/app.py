"""The app of lib-tests/python.test.ts, in Python: a registry, a workflow with a fan-in, and a pod that
mounts an artifact through the CSI driver. Prints each chart's objects as JSON on stdout."""
import json

import cdk8s
import cdk8s_plus_27 as kplus
from cdk8s_oras import (
    OrasCsiDriver,
    OrasRegistry,
    OrasWorkflow,
    StepInput,
    StepOutput,
)

app = cdk8s.App()

registry_chart = cdk8s.Chart(app, "registry")
registry = OrasRegistry(registry_chart, "Registry", name="oras")

workflow_chart = cdk8s.Chart(app, "workflow")
workflow = OrasWorkflow(
    workflow_chart, "Workflow",
    name="hello",
    registry=OrasRegistry.from_host("oras:5000", plain_http=True),
    run_id="r0python",
    input_timeout=cdk8s.Duration.minutes(10),
)
hello = workflow.add_step("greeting",
    image="docker.io/library/busybox:1.36.1",
    command=["sh", "-c", "echo hello > /out/greeting.txt"],
    output=StepOutput(path="/out"),
)
world = workflow.add_step("subject",
    image="docker.io/library/busybox:1.36.1",
    command=["sh", "-c", "echo world > /out/subject.txt"],
    output=StepOutput(path="/out"),
)
workflow.add_step("combine",
    image="docker.io/library/busybox:1.36.1",
    command=["sh", "-c", "cat /in/a/greeting.txt /in/b/subject.txt | tee /out/message.txt"],
    inputs=[StepInput(artifact=hello.output, path="/in/a"), StepInput(artifact=world.output, path="/in/b")],
    output=StepOutput(path="/out", tag="message"),
    output_pipe="combine.log",
)

csi_chart = cdk8s.Chart(app, "csi", namespace="oras-csi")
driver = OrasCsiDriver(csi_chart, "Driver")
models = driver.volume(csi_chart, "Models", OrasRegistry.from_host("oras.default.svc:5000", plain_http=True).artifact("models/demo", "v1"), name="models")
kplus.Pod(csi_chart, "Demo",
    containers=[kplus.ContainerProps(
        name="main",
        image="docker.io/library/busybox:1.36.1",
        command=["ls", "-R", "/models"],
        volume_mounts=[kplus.VolumeMount(path="/models", volume=models, read_only=True)],
    )],
)

print(json.dumps({chart.node.id: chart.to_json() for chart in (registry_chart, workflow_chart, csi_chart)}))
