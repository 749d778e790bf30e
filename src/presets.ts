/**
 * Provider presets (SPEC §13): the allowed domains, base URL and inject rule of a well-known API,
 * and the environment variables its own SDKs read, so that `credential add NAME --preset openai`
 * needs no other flag and `run` can hand an unmodified SDK the gateway. Each base URL is the one
 * the provider's SDK uses as its own base, so the gateway URL `/v1/gateway/NAME` replaces it as is.
 */
import { escapeControls } from './bytes.ts';
import { usage } from './errors.ts';

export interface Preset {
  name: string;
  title: string;
  allowedDomains: readonly string[];
  baseUrl: string;
  inject: string;
  /**
   * The variables `run` sets: the SDK's base URL and API key. Null where the usual clients read no
   * base URL from the environment: the agent token in their key variable would be sent straight to
   * the provider instead of the gateway, so `run` uses the generic TP_NAME_* names there.
   */
  env: { baseUrl: string; token: string } | null;
  /** Variables `run` removes from the child's environment: another key the SDK would send first. */
  unset?: readonly string[];
}

export const PRESETS: readonly Preset[] = [
  {
    name: 'openai',
    title: 'OpenAI API',
    allowedDomains: ['api.openai.com'],
    baseUrl: 'https://api.openai.com/v1',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: { baseUrl: 'OPENAI_BASE_URL', token: 'OPENAI_API_KEY' },
  },
  {
    name: 'anthropic',
    title: 'Anthropic API',
    allowedDomains: ['api.anthropic.com'],
    baseUrl: 'https://api.anthropic.com',
    inject: 'x-api-key: {{CREDENTIAL}}',
    env: { baseUrl: 'ANTHROPIC_BASE_URL', token: 'ANTHROPIC_API_KEY' },
    // The SDK sends ANTHROPIC_AUTH_TOKEN as `Authorization: Bearer`, which serve reads first.
    unset: ['ANTHROPIC_AUTH_TOKEN'],
  },
  {
    name: 'gemini',
    title: 'Google Gemini API',
    allowedDomains: ['generativelanguage.googleapis.com'],
    baseUrl: 'https://generativelanguage.googleapis.com',
    inject: 'x-goog-api-key: {{CREDENTIAL}}',
    // Gemini CLI reads these; the @google/genai SDK takes its base URL only in code.
    env: { baseUrl: 'GOOGLE_GEMINI_BASE_URL', token: 'GEMINI_API_KEY' },
    unset: ['GOOGLE_API_KEY'],
  },
  {
    name: 'groq',
    title: 'Groq API',
    allowedDomains: ['api.groq.com'],
    baseUrl: 'https://api.groq.com',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: { baseUrl: 'GROQ_BASE_URL', token: 'GROQ_API_KEY' },
  },
  {
    name: 'mistral',
    title: 'Mistral AI API',
    allowedDomains: ['api.mistral.ai'],
    baseUrl: 'https://api.mistral.ai',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: null,
  },
  {
    name: 'github',
    title: 'GitHub REST API',
    allowedDomains: ['api.github.com'],
    baseUrl: 'https://api.github.com',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: null,
  },
  {
    name: 'stripe',
    title: 'Stripe API',
    allowedDomains: ['api.stripe.com'],
    baseUrl: 'https://api.stripe.com',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: null,
  },
  {
    name: 'slack',
    title: 'Slack Web API',
    allowedDomains: ['slack.com'],
    baseUrl: 'https://slack.com/api',
    inject: 'Authorization: Bearer {{CREDENTIAL}}',
    env: null,
  },
];

/** The preset of that name, or a usage error with a suggestion. */
export function findPreset(name: string, closest?: (word: string) => string | null): Preset {
  const preset = PRESETS.find((p) => p.name === name.toLowerCase());
  if (preset !== undefined) return preset;
  const near = closest?.(name) ?? null;
  throw usage(
    'unknown_preset',
    `unknown preset "${escapeControls(name)}"`,
    near === null
      ? `the presets are ${
        PRESETS.map((p) => p.name).join(', ')
      } (see \`trust-protocol credential presets\`)`
      : `did you mean --preset ${near}?`,
  );
}
