// Every text the page shows, per language. Brazilian Portuguese first. Error texts are keyed by
// RealtimeClient's stable error codes; each says what happened and what to do.

export const STRINGS = {
  "pt-BR": {
    title: "Assistente de Voz",
    subtitle: "Converse com o assistente usando a sua voz.",
    language: "Idioma",
    start: "Iniciar conversa",
    stop: "Encerrar conversa",
    end: "Encerrar",
    interrupt: "Interromper o assistente",
    mute: "Silenciar microfone",
    states: {
      idle: "Inativo", connecting: "Conectando", recording: "Gravando", muted: "Microfone silenciado", listening: "Ouvindo",
      processing: "Processando", playing: "Reproduzindo", interrupting: "Interrompendo",
    },
    hints: {
      idle: "Toque no microfone (ou pressione Espaço) para começar.",
      connecting: "Conectando…",
      recording: "Pode falar. Estou ouvindo.",
      muted: "O assistente não ouve você. Toque em “Silenciar microfone” de novo para voltar a falar.",
      listening: "Ouvindo você…",
      processing: "Processando sua fala…",
      playing: "O assistente está respondendo. Fale ou pressione Esc para interromper.",
      interrupting: "Interrompendo…",
    },
    transcript: "Conversa",
    you: "Você",
    assistant: "Assistente",
    interrupted: "interrompido",
    notTranscribed: "não foi possível transcrever",
    empty: "A conversa aparecerá aqui.",
    typeHere: "Ou digite uma mensagem",
    send: "Enviar",
    details: "Detalhes de desempenho",
    latencyLast: "Latência do último turno",
    latencyAverage: "Média",
    latencyNote: "Do fim da sua fala até o início da resposta.",
    latencyChart: "Latência por turno",
    latencyChartEmpty: "O gráfico aparece depois do primeiro turno.",
    latencyChartSummary: (count, min, max, average) => (count === 1
      ? `1 turno: ${min} ms.`
      : `Últimos ${count} turnos: de ${min} a ${max} ms; média de ${average} ms (linha tracejada).`),
    turn: "turno",
    levels: "Níveis de áudio",
    micLevel: "Microfone",
    assistantLevel: "Assistente",
    levelWords: {
      micSound: "captando som", micSilent: "silêncio", micMuted: "silenciado",
      assistantSound: "falando", assistantSilent: "em silêncio",
    },
    micFlat: "Ainda não chega som do seu microfone. Fale algo; se o medidor não se mexer, verifique se o microfone "
      + "está ligado, não está silenciado no sistema e é o escolhido nas configurações do navegador.",
    reconnect: "Reconectar",
    dropped: "A chamada caiu. Deseja reconectar?",
    detail: "Detalhe técnico",
    errors: {
      insecure_context: "O microfone só funciona em páginas seguras (https) ou em localhost. Abra esta página pelo endereço https.",
      unsupported_browser: "Este navegador não permite chamadas de voz. Use uma versão recente do Chrome, Edge, Firefox ou Safari.",
      mic_denied: "Permissão do microfone negada. Libere o microfone para este site nas configurações do navegador e tente de novo.",
      mic_missing: "Nenhum microfone encontrado. Conecte um microfone e tente de novo.",
      mic_busy: "O microfone está em uso por outro aplicativo. Feche o outro aplicativo e tente de novo.",
      gateway_unreachable: "Não foi possível falar com o servidor. Verifique sua conexão com a internet e tente de novo.",
      not_authorized: "Este servidor não aceita conversas iniciadas por esta página. Fale com quem administra o serviço.",
      origin_forbidden: "Este servidor não aceita conversas a partir deste site. Fale com quem administra o serviço.",
      rate_limited: "Muitas tentativas em pouco tempo. Aguarde um minuto e tente de novo.",
      gateway_busy: "O servidor está ocupado agora. Tente de novo em alguns instantes.",
      token_rejected: "A autorização da chamada expirou ou é inválida. Toque no microfone para tentar de novo.",
      call_failed: "Não foi possível iniciar a chamada. Tente de novo em instantes.",
      ice_failed: "A conexão de áudio não se estabeleceu (rede ou firewall bloqueando). Tente outra rede ou tente de novo.",
      turn_rejected: "O servidor de retransmissão recusou a conexão. Tente de novo; se persistir, avise quem administra o serviço.",
      connection_unstable: "Conexão instável. Tentando recuperar o áudio…",
      connection_lost: "A conexão caiu (a internet oscilou ou o servidor saiu do ar). Verifique sua rede e reconecte.",
      session_ended: "A conversa foi encerrada pelo servidor. Você pode reconectar para começar de novo.",
      gateway_draining: "O servidor vai reiniciar em breve e esta conversa será encerrada. Depois, reconecte.",
      upstream_reconnecting: "A conexão com o assistente caiu. Reconectando; continue em instantes…",
      upstream_error: "O assistente encontrou um erro e não respondeu. Tente falar de novo.",
      event_rejected: "O servidor recusou o pedido (configuração não permitida).",
    },
  },
  en: {
    title: "Voice Assistant",
    subtitle: "Talk to the assistant with your voice.",
    language: "Language",
    start: "Start conversation",
    stop: "End conversation",
    end: "End",
    interrupt: "Interrupt the assistant",
    mute: "Mute microphone",
    states: {
      idle: "Idle", connecting: "Connecting", recording: "Recording", muted: "Microphone muted", listening: "Listening",
      processing: "Processing", playing: "Playing", interrupting: "Interrupting",
    },
    hints: {
      idle: "Tap the microphone (or press Space) to start.",
      connecting: "Connecting…",
      recording: "Go ahead, I'm listening.",
      muted: "The assistant cannot hear you. Tap “Mute microphone” again to speak.",
      listening: "Listening to you…",
      processing: "Processing your speech…",
      playing: "The assistant is answering. Speak or press Esc to interrupt.",
      interrupting: "Interrupting…",
    },
    transcript: "Conversation",
    you: "You",
    assistant: "Assistant",
    interrupted: "interrupted",
    notTranscribed: "could not be transcribed",
    empty: "The conversation will appear here.",
    typeHere: "Or type a message",
    send: "Send",
    details: "Performance details",
    latencyLast: "Last turn latency",
    latencyAverage: "Average",
    latencyNote: "From the end of your speech to the start of the answer.",
    latencyChart: "Latency per turn",
    latencyChartEmpty: "The chart appears after the first turn.",
    latencyChartSummary: (count, min, max, average) => (count === 1
      ? `1 turn: ${min} ms.`
      : `Last ${count} turns: ${min} to ${max} ms; average ${average} ms (dashed line).`),
    turn: "turn",
    levels: "Audio levels",
    micLevel: "Microphone",
    assistantLevel: "Assistant",
    levelWords: {
      micSound: "picking up sound", micSilent: "silence", micMuted: "muted",
      assistantSound: "speaking", assistantSilent: "silent",
    },
    micFlat: "No sound is reaching us from your microphone yet. Say something; if the meter does not move, check "
      + "that the microphone is on, not muted in your system, and the one chosen in the browser's settings.",
    reconnect: "Reconnect",
    dropped: "The call dropped. Reconnect?",
    detail: "Technical detail",
    errors: {
      insecure_context: "The microphone only works on secure (https) pages or localhost. Open this page over https.",
      unsupported_browser: "This browser cannot make voice calls. Use a recent Chrome, Edge, Firefox or Safari.",
      mic_denied: "Microphone permission denied. Allow the microphone for this site in your browser settings and try again.",
      mic_missing: "No microphone found. Connect a microphone and try again.",
      mic_busy: "Another application is using the microphone. Close it and try again.",
      gateway_unreachable: "Could not reach the server. Check your internet connection and try again.",
      not_authorized: "This server does not accept conversations started from this page. Contact the service's administrator.",
      origin_forbidden: "This server does not accept conversations from this site. Contact the service's administrator.",
      rate_limited: "Too many attempts in a short time. Wait a minute and try again.",
      gateway_busy: "The server is busy right now. Try again in a moment.",
      token_rejected: "The call's authorization expired or is invalid. Tap the microphone to try again.",
      call_failed: "Could not start the call. Try again in a moment.",
      ice_failed: "The audio connection could not be established (network or firewall blocking). Try another network or try again.",
      turn_rejected: "The relay server refused the connection. Try again; if it persists, tell the service's administrator.",
      connection_unstable: "Unstable connection. Trying to recover the audio…",
      connection_lost: "The connection dropped (the internet wavered or the server went down). Check your network and reconnect.",
      session_ended: "The server ended the conversation. You can reconnect to start again.",
      gateway_draining: "The server will restart soon and this conversation will end. Reconnect afterwards.",
      upstream_reconnecting: "The connection to the assistant dropped. Reconnecting; carry on in a moment…",
      upstream_error: "The assistant hit an error and did not answer. Try speaking again.",
      event_rejected: "The server refused the request (setting not allowed).",
    },
  },
};

/** Brazilian Portuguese unless the user chose otherwise (?lang=en, or the selector, remembered). */
export function pickLanguage(requested) {
  for (const choice of [requested, stored()]) {
    if (choice && STRINGS[choice]) return choice;
  }
  return "pt-BR";
}

export function rememberLanguage(lang) {
  try { localStorage.setItem("language", lang); } catch { /* storage blocked: not remembered */ }
}

function stored() {
  try { return localStorage.getItem("language"); } catch { return null; }
}
