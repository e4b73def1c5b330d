"""Every string a Telegram user reads (Russian). Code and comments elsewhere stay English.

Messages are sent with parse_mode=HTML: anything interpolated from data goes through
`esc()` first.
"""

from __future__ import annotations

from html import escape

MARKET_LABELS = {"eq": "EQ | Акции", "fx": "FX | Валюта", "fo": "FO | Фьючерсы"}
MONTHS = ("Январь", "Февраль", "Март", "Апрель", "Май", "Июнь", "Июль", "Август", "Сентябрь", "Октябрь",
          "Ноябрь", "Декабрь")
MONTHS_SHORT = ("янв", "фев", "мар", "апр", "май", "июн", "июл", "авг", "сен", "окт", "ноя", "дек")
WEEKDAYS = ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс")
STATUS = {"working": "рабочий", "holiday": "выходной"}
SOURCE = {"iss": "биржа", "manual": "вручную", "default": "по умолчанию"}

TRUNCATED = "… и ещё {n}"


def esc(value: object) -> str:
    return escape(str(value), quote=False)


# ------------------------------------------------------------------ commands

START = ("👋 Бот мониторинга ALGOPACK (MOEX ISS).\n"
         "Следит за календарём торговых сессий и показывает состояние мониторинга.\n"
         "Список команд — /help")

HELP_TITLE = "<b>Команды</b>"       # /help: the title, the command table's entries (bot/commands.py), the legend
HELP_LEGEND = "Обозначения календаря: 🔴 выходной, 🟡 особое расписание, [ ] сегодня."

INFO = ("<b>Чат</b>: <code>{chat_id}</code> ({chat_type}){title}\n"
        "<b>Пользователь</b>: <code>{user_id}</code>{username}")

REFUSED = ("⛔ Доступ запрещён. Чат <code>{chat_id}</code>, пользователь <code>{user_id}</code> "
           "не в списке разрешённых.")
REFUSED_SHORT = "⛔ Доступ запрещён"
NOT_ADMIN = "⛔ Менять календарь могут только администраторы"
ADMIN_ONLY = "⛔ Эта команда только для администраторов"
STALE = "Меню устарело — откройте команду заново"
INTERNAL_ERROR = "⚠️ Внутренняя ошибка, попробуйте ещё раз"
BAD_ARGS_CALENDAR = "Не понял месяц. Пример: <code>/calendar 2026-11</code> (годы {first}–{last})"

# ------------------------------------------------------------------ calendar

CAL_YEARS = "📅 <b>Календарь торговых дней</b>\nВыберите год:"
CAL_MONTHS = "📅 <b>{year}</b>\nВыберите месяц:"
CAL_MONTH_TITLE = "📅 <b>{month} {year}</b>"
CAL_LEGEND = "Нажмите на день, чтобы переключить рабочий ⇄ выходной.\n🔴 выходной · 🟡 особое расписание · [ ] сегодня"
CAL_SPECIAL_HEADER = "<b>Особые дни месяца:</b>"
CAL_NO_SPECIAL = "Особых дней в этом месяце нет."
CAL_DAY_LINE = "{day} — {status}{detail} · {source}"
CAL_SESSIONS = " ({sessions})"
CAL_ONLY_MARKETS = "торгуют: {markets}"
CAL_CHANGED = "✅ {actor}: {day} {old} → {new}"
CAL_WRITE_FAILED = "⚠️ Не удалось записать календарь: {error}"
CAL_MISSING = ("⚠️ Файл календаря не найден: {path}. Восстановите его (или запустите calendar-sync); "
               "до тех пор экспортер работает по последней загруженной версии.")
CAL_NOT_UTF8 = "⚠️ Файл календаря {path} не в кодировке UTF-8 — сохраните его как UTF-8. {error}"
CAL_UNREADABLE = ("⚠️ Календарь {path} не читается, экспортер работает по последней исправной версии. "
                  "Причина: {error}")
CAL_READ_ONLY = ("🔒 Календарь здесь только для чтения: {path} лежит в каталоге без права записи "
                 "(например, ConfigMap). Измените его в источнике — из бота его не поменять.")
CAL_BACK_YEARS = "⬆ Годы"
CAL_BACK_MONTHS = "⬆ {year}"
CAL_TOGGLED_ANSWER = "{day}: {new}"
CAL_SYNC_NOT_ADMIN = "⛔ Синхронизировать календарь с биржей могут только администраторы"
CAL_SYNC_DONE = ("🔄 {actor}: календарь сверен с биржей (ISS) за {first}–{last}\n"
                 "добавлено {added}, обновлено {updated}, ручных правок сохранено {kept}")
CAL_SYNC_LEGEND = "+ добавлен · ~ обновлён · = ручная правка оставлена:"
CAL_SYNC_NO_CHANGES = "Изменений нет: календарь уже совпадает с биржевым."
CAL_SYNC_FAILED = ("⚠️ Синхронизация с календарём биржи не удалась, календарь не изменён.\n"
                   "Причина: {error}")

# ------------------------------------------------------------------ status / alerts

STATUS_TITLE = "📡 <b>Статус</b> на {now} МСК"
STATUS_IN_SESSION = "🟢 идёт сессия до {end}"
STATUS_OUT_OF_SESSION = "⚪ вне сессии"
STATUS_NEXT = "следующая {start}"
STATUS_NO_NEXT = "следующей сессии в ближайшие 30 дней нет"
STATUS_ENDPOINT = "  {endpoint}: {age}"
STATUS_AGE = "данные {ago} назад ({at}), отставание {lag}"
STATUS_NO_DATA = "нет данных"
STATUS_ALERTS = "🔥 <b>Активные алерты: {n}</b>"
STATUS_NO_ALERTS = "✅ Активных алертов нет"
PROMETHEUS_DOWN = "⚠️ Prometheus недоступен ({reason}) — возраст данных неизвестен"
ALERTMANAGER_DOWN = "⚠️ Alertmanager недоступен ({reason}) — алерты неизвестны"

ALERTS_TITLE = "🔥 <b>Активные алерты: {n}</b>"
ALERTS_NONE = "✅ Активных алертов нет"
ALERT_LINE = "{n}. {severity} <b>{name}</b>{where} — с {since}\n   {summary}"
SILENCE_1H = "🔕 1 ч #{n}"
SILENCE_EOD = "🔕 до конца дня #{n}"
REFRESH = "🔄 Обновить"
ALERT_GONE = "Алерт уже не активен"
SILENCED_ANSWER = "🔕 Заглушено до {until}"
SILENCED_NOTE = "🔕 {actor} заглушил(а) {name}{where} до {until}"
SILENCES_TITLE = "🔕 <b>Активные заглушки: {n}</b>"
SILENCES_NONE = "Активных заглушек нет"
SILENCE_LINE = "{n}. {matchers}\n   до {until} · {author}{comment}"
SILENCE_EXPIRE = "✖ снять #{n}"
SILENCE_EXPIRED_ANSWER = "Заглушка снята"
SILENCE_EXPIRED_NOTE = "🔔 {actor} снял(а) заглушку: {matchers}"
SILENCE_COMMENT = "из Telegram: {actor}"

# ------------------------------------------------------------------ report

REPORT_CAPTION_TITLE = "📊 Задержка публикации · {market} · {day}"
REPORT_TABLE_HEADER = "датасет: макс / мин / средн / медиана, с"
REPORT_TABLE_LINE = "{endpoint}: {max} / {min} / {mean} / {median}"
REPORT_NO_DATA = "📊 {market} · {day}: нет данных о задержке публикации"
REPORT_BAD_ARGS = ("Не понял аргументы. Пример: <code>/report fo 2026-11-25</code> "
                   "(рынок: eq, fx, fo; дата ГГГГ-ММ-ДД, не в будущем)")
REPORT_PLOT_TITLE = "Задержка публикации {market}, {day}"
REPORT_PLOT_Y = "SYSTIME − время интервала, с"
REPORT_PLOT_X = "время МСК"

# ------------------------------------------------------------------ digest

DIGEST_TITLE = "📊 <b>Итоги дня {day}</b>"
DIGEST_HI2 = "HI2: {marks}"
DIGEST_HI2_YES = "✅"
DIGEST_HI2_NO = "❌"
DIGEST_HI2_NONE = "— нет данных"
DIGEST_DELAY_HEADER = "Задержка публикации, с (макс / мин / средн / медиана):"
DIGEST_DELAY_LINE = "{market} {endpoint} {max} / {min} / {mean} / {median}"
DIGEST_DELAY_NONE = "{market}: нет данных"
DIGEST_TOTALS = "Пропущенных интервалов: {missing} · Алертов за день: {alerts}"
DIGEST_UNKNOWN = "нет данных"
DIGEST_NO_MARKETS = "Рынки не выбраны — считать нечего"
DIGEST_PROMETHEUS_DOWN = "⚠️ Prometheus недоступен ({reason}) — итоги дня посчитать не удалось"
DIGEST_BAD_ARGS = ("Не понял аргументы. Пример: <code>/digest 2026-11-25</code> "
                   "(дата ГГГГ-ММ-ДД или ДД.ММ.ГГГГ, не в будущем; можно добавить рынок: eq, fx, fo)")

# ------------------------------------------------------------------ dead-man check (bot/deadman.py)

DEADMAN_DOWN = "⚠️ <b>Мониторинг не работает</b>: {what}"
DEADMAN_STILL_DOWN = "⚠️ <b>Мониторинг всё ещё не работает</b>: {what}"
DEADMAN_LINE = "• {problem} — с {since} МСК ({duration})"
DEADMAN_FOOTER = "Алерты о данных ALGOPACK могут не приходить, пока это не исправлено."
DEADMAN_UP = "✅ <b>Мониторинг снова работает</b>: {what} (не работало {duration})"
DEADMAN_PROMETHEUS = "Prometheus {url} не отвечает ({reason})"
DEADMAN_PROMETHEUS_UP = "Prometheus {url} отвечает"
DEADMAN_EXPORTER = "экспортёр недоступен для Prometheus (up{{job=\"algopack\"}} = 0 или нет цели)"
DEADMAN_EXPORTER_UP = "Prometheus снова получает метрики экспортёра"
DEADMAN_ALERTMANAGER = "Alertmanager {url} не отвечает ({reason})"
DEADMAN_ALERTMANAGER_UP = "Alertmanager {url} отвечает"
DEADMAN_WATCHDOG = "в Alertmanager {url} нет сигнала AlgopackWatchdog: Prometheus не доставляет ему алерты"
DEADMAN_WATCHDOG_UP = "Alertmanager {url} снова получает алерты от Prometheus"
DEADMAN_ALERT_TOKEN = "Telegram не принимает токен бота Alertmanager ({reason}): алерты в группу не доставляются"
DEADMAN_ALERT_TOKEN_UP = "Telegram снова принимает токен бота Alertmanager"

# ------------------------------------------------------------------ /slo

MONTHS_IN = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
             "ноябрь", "декабрь")
SLO_TITLE = "📈 <b>SLO за {month}</b>"
SLO_TARGET = " (цель {target} % интервалов вовремя)"
SLO_HEADER = "Вовремя · опоздали · пропущены · задержка p50/p95/p99, с · бюджет ошибок:"
SLO_LINE = "{market} {endpoint}: {ratio} % · {late} · {missing} · {p50}/{p95}/{p99} · {budget}{mark}"
SLO_BUDGET_GONE = "исчерпан"
SLO_FOOTER = "Только торговое время: ночи и выходные бюджет не расходуют и не пополняют."
SLO_FUTURE = "Этот месяц ещё не начался."
SLO_NO_DATA = "Нет данных: за этот месяц экспортёр не оценил ни одного интервала."
SLO_PROMETHEUS_DOWN = "⚠️ Prometheus недоступен ({reason}) — SLO посчитать не удалось"
SLO_BAD_ARGS = "Не понял месяц. Пример: <code>/slo 2026-11</code>; без аргумента — текущий месяц."
