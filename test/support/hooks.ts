import { closeSharedSystem } from './system.ts';

export const mochaHooks = {
  async afterAll() {
    await closeSharedSystem();
  },
};
