import type { ContainerType } from 'type-graphql';
import type { AnalysisService } from '../jobs/analysis.service.js';
import type { JobService } from '../jobs/job.service.js';
import type { Registry } from '../store/registry.js';

/** What resolvers delegate to. */
export interface Services {
  registry: Registry;
  jobs: JobService;
  analysis: AnalysisService;
}

/** Per request: this server's services, and the container that hands type-graphql its resolver instances. */
export interface StrataContext {
  services: Services;
  container: ContainerType;
}

type ResolverClass = new (services: Services) => object;

/**
 * Resolver instances bound to one server's services. The schema is built once per process and
 * finds its resolvers through the request's context, so several servers (tests) can share it.
 */
export function resolverContainer(services: Services): ContainerType {
  const instances = new Map<unknown, object>();
  return {
    get(someClass: ResolverClass) {
      let instance = instances.get(someClass);
      if (!instance) {
        instance = new someClass(services);
        instances.set(someClass, instance);
      }
      return instance;
    },
  };
}

export function contextFor(services: Services): StrataContext {
  return { services, container: resolverContainer(services) };
}
