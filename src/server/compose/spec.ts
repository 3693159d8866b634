// What a compose import produces: a stack's services in the model's terms, before the control plane
// resolves cross-stack references, schedules and allocates. Pure data; no ids.
import type {
  HealthCheck,
  LaunchConfig,
  LbConfig,
  ServiceKind,
  UpgradeStrategy,
} from '../../model/resources.js';

export interface ServiceLinkSpec {
  /** Target service name in the same stack. */
  service: string;
  /** Stack of the target; absent = this stack. Set for `external_links` (`stack/service`). */
  stack?: string;
  /** Link alias, when the link names one (`db:database`). */
  alias?: string;
}

export interface ServiceSpec {
  name: string;
  kind: ServiceKind;
  scale: number;
  global: boolean;
  /** Absent for externalService and dnsService (they run no containers). */
  launchConfig?: LaunchConfig;
  secondaryLaunchConfigs: LaunchConfig[];
  metadata: Record<string, unknown>;
  healthCheck?: HealthCheck;
  /** Port rules keep `service` as written (`svc` or `stack/svc`); the server resolves it. */
  lbConfig?: LbConfig;
  upgradeStrategy?: UpgradeStrategy;
  externalIpAddresses: string[];
  hostname?: string;
  /** false: created inactive (rancher-compose `start_on_create: false`); absent: started. */
  startOnCreate?: boolean;
  /** rancher-compose `drain_timeout_ms`. */
  drainTimeoutMs?: number;
  /** `links` (same stack) and `external_links` (other stacks), in file order. */
  links: ServiceLinkSpec[];
}

export interface CatalogQuestion {
  variable: string;
  label?: string;
  description?: string;
  type: 'string' | 'int' | 'boolean' | 'enum' | 'password' | 'service' | 'multiline' | 'certificate';
  required: boolean;
  default?: string;
  options?: string[];
}

export interface CatalogInfo {
  name?: string;
  version?: string;
  description?: string;
  uuid?: string;
  questions: CatalogQuestion[];
}

export interface StackSpec {
  services: ServiceSpec[];
  catalog?: CatalogInfo;
  /** Answers after defaults were applied (what `${VAR}` was substituted with). */
  answers: Record<string, string>;
}

export interface ComposeInput {
  dockerCompose: string;
  rancherCompose?: string;
  /** Catalog answers / variables for `${VAR}` substitution. */
  answers?: Record<string, string>;
  /** File names used in error messages. */
  dockerComposeFile?: string;
  rancherComposeFile?: string;
}

export interface ComposeFiles {
  dockerCompose: string;
  rancherCompose: string;
}
