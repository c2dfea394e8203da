import { SetMetadata } from '@nestjs/common';

export const IS_PUBLIC = 'auth:public';

/**
 * Marks a controller or handler as open to anyone: no API key, no rate limit. Everything else is
 * protected by the global guards, whatever the case or encoding of the path that reached it, because
 * the guards decide by this metadata of the matched handler, never by the request's path text.
 */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(IS_PUBLIC, true);
