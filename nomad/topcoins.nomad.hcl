# topcoins on Nomad: the simulator, the price, ranking and exchange actors, the recorder, and
# API nodes behind service
# discovery. API keys come from the Nomad variable nomad/jobs/topcoins (see README.md), read
# by templates; this file holds no secret.

variable "image" {
  type    = string
  default = "topcoins:latest"
}

variable "nats_url" {
  type        = string
  description = "NATS server URL(s), comma-separated"
  default     = "nats://topcoins-nats.service.nomad:4222"
}

variable "api_count" {
  type    = number
  default = 2
}

job "topcoins" {
  type = "service"

  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "sim" {
    count = 1

    network {
      port "http" { to = 9000 }
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-sim"
      port     = "http"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/sim/status"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "sim" {
      driver = "docker"

      config {
        image = var.image
        args  = ["sim"]
        ports = ["http"]
      }

      env {
        TOPCOINS_LISTEN = "0.0.0.0:9000"
      }

      resources {
        cpu    = 300
        memory = 128
      }
    }
  }

  group "price" {
    count = 1

    network {
      port "metrics" { to = 9101 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-price"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "price" {
      driver = "docker"

      config {
        image = var.image
        args  = ["price"]
        ports = ["metrics"]
      }

      env {
        NATS_URL                = var.nats_url
        TOPCOINS_METRICS_LISTEN = "0.0.0.0:9101"
      }

      # Keys from the Nomad variable, rendered into the environment; empty when unset.
      template {
        destination = "secrets/keys.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
CMC_API_KEY={{ .cmc_api_key }}
COINGECKO_API_KEY={{ .coingecko_api_key }}
{{ end }}
{{ range nomadService "topcoins-sim" }}TOPCOINS_SIM_URL=http://{{ .Address }}:{{ .Port }}{{ end }}
EOT
      }

      resources {
        cpu    = 300
        memory = 128
      }
    }
  }

  group "ranking" {
    count = 1

    network {
      port "metrics" { to = 9102 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-ranking"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "ranking" {
      driver = "docker"

      config {
        image = var.image
        args  = ["ranking"]
        ports = ["metrics"]
      }

      env {
        NATS_URL                = var.nats_url
        TOPCOINS_METRICS_LISTEN = "0.0.0.0:9102"
      }

      template {
        destination = "secrets/keys.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
CRYPTOCOMPARE_API_KEY={{ .cryptocompare_api_key }}
{{ end }}
{{ range nomadService "topcoins-sim" }}TOPCOINS_SIM_URL=http://{{ .Address }}:{{ .Port }}{{ end }}
EOT
      }

      resources {
        cpu    = 300
        memory = 128
      }
    }
  }

  group "exchanges" {
    count = 1

    network {
      port "metrics" { to = 9104 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-exchanges"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "exchanges" {
      driver = "docker"

      config {
        image = var.image
        args  = ["exchanges"]
        ports = ["metrics"]
      }

      env {
        NATS_URL                = var.nats_url
        TOPCOINS_METRICS_LISTEN = "0.0.0.0:9104"
        # Public, keyless APIs: the real exchanges unless the simulator runs (then those left
        # at their real URLs are the simulator's, as for the keyless providers).
        TOPCOINS_EXCHANGES = "kraken,coinbase,binance"
      }

      template {
        destination = "local/sim.env"
        env         = true
        data        = <<EOT
{{ range nomadService "topcoins-sim" }}TOPCOINS_SIM_URL=http://{{ .Address }}:{{ .Port }}{{ end }}
EOT
      }

      # Read only, at start: the ranks begin from the metrics' records of the last 24 h.
      template {
        destination = "secrets/database.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
TOPCOINS_DATABASE_URL={{ .database_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "recorder" {
    # One recorder: it is the one durable consumer of the notices (a second would share its
    # work, not double it, but one is enough and keeps the database writes in order).
    count = 1

    network {
      port "metrics" { to = 9103 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-recorder"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "recorder" {
      driver = "docker"

      config {
        image = var.image
        args  = ["recorder"]
        ports = ["metrics"]
      }

      env {
        NATS_URL                = var.nats_url
        TOPCOINS_METRICS_LISTEN = "0.0.0.0:9103"
        TOPCOINS_BACKFILL_COINS = "100"
      }

      # The database URL (with its password) comes from the Nomad variable, never this file:
      # `nomad var put nomad/jobs/topcoins database_url=postgres://…` (see nomad/README.md).
      template {
        destination = "secrets/database.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
TOPCOINS_DATABASE_URL={{ .database_url }}
CRYPTOCOMPARE_API_KEY={{ .cryptocompare_api_key }}
{{ end }}
{{ range nomadService "topcoins-sim" }}TOPCOINS_SIM_URL=http://{{ .Address }}:{{ .Port }}{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }

  group "alerts" {
    # One alerts process: it evaluates every rule and delivers the outbox (two would each
    # evaluate, and the outbox's unique dedupe keys would keep one copy of each decision, but
    # deliveries could then be attempted twice).
    count = 1

    network {
      port "metrics" { to = 9105 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-alerts"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "alerts" {
      driver = "docker"

      config {
        image = var.image
        args  = ["alerts"]
        ports = ["metrics"]
      }

      env {
        NATS_URL                = var.nats_url
        TOPCOINS_METRICS_LISTEN = "0.0.0.0:9105"
      }

      # The database URL and the SMTP server (with their passwords) come from the Nomad
      # variable, never this file (see nomad/README.md).
      template {
        destination = "secrets/alerts.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
TOPCOINS_DATABASE_URL={{ .database_url }}
{{ with .smtp_url }}TOPCOINS_SMTP_URL={{ . }}{{ end }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "api" {
    count = var.api_count

    network {
      port "http" { to = 8080 }
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "2s"
      mode     = "delay"
    }

    service {
      name     = "topcoins-api"
      port     = "http"
      provider = "nomad"
      tags     = ["prometheus", "http"]

      check {
        name     = "alive"
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }

      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "api" {
      driver = "docker"

      config {
        image = var.image
        args  = ["api"]
        ports = ["http"]
      }

      env {
        NATS_URL        = var.nats_url
        TOPCOINS_LISTEN = "0.0.0.0:8080"
      }

      # History, users and watchlists are in the recorder's database (URL from the Nomad
      # variable), and so is the admin key that may create users (optional: `admin_key`).
      template {
        destination = "secrets/database.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/topcoins" }}
TOPCOINS_DATABASE_URL={{ .database_url }}
{{ if .admin_key }}TOPCOINS_ADMIN_KEY={{ .admin_key }}{{ end }}
{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 96
      }
    }
  }
}
