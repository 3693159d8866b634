// Rancher 1.x label names and the well-known address, shared by the control plane and the agents (one
// spelling of each, so the compose parser, the deployer, the runtime and adoption cannot drift apart).

/** The address of rancher-dns and rancher-metadata inside every container (the original's link-local address). */
export const RANCHER_SERVICES_IP = '169.254.169.250';

export const LABELS = {
  stackName: 'io.rancher.stack.name',
  stackServiceName: 'io.rancher.stack_service.name',
  /** Pre-1.0 spellings, still written for old templates. */
  projectName: 'io.rancher.project.name',
  projectServiceName: 'io.rancher.project_service.name',
  environmentUuid: 'io.rancher.environment.uuid',
  containerUuid: 'io.rancher.container.uuid',
  containerName: 'io.rancher.container.name',
  containerIp: 'io.rancher.container.ip',
  containerRequestedIp: 'io.rancher.container.requested_ip',
  containerStartOnce: 'io.rancher.container.start_once',
  containerPullImage: 'io.rancher.container.pull_image',
  containerNetwork: 'io.rancher.container.network',
  containerDns: 'io.rancher.container.dns',
  containerHostnameOverride: 'io.rancher.container.hostname_override',
  serviceLaunchConfig: 'io.rancher.service.launch.config',
  servicePrimaryLaunchConfig: 'io.rancher.service.primary.launch.config',
  serviceDeploymentUnit: 'io.rancher.service.deployment.unit',
  sidekicks: 'io.rancher.sidekicks',
  schedulerGlobal: 'io.rancher.scheduler.global',
} as const;
